-- A mix: reads from a paths file, and a share of new rounds recorded on fresh calls.
-- usage: wrk ... -s mix.lua URL -- PATHS_FILE FIRST_CALL_ID CALLS_PER_THREAD WINDOW WRITE_SHARE
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local reads, record, write_share

setup = common.setup
done = common.done

function init(args)
  common.seed_random()
  reads = common.load_reads(args[1])
  record = common.recorder(tonumber(args[2]), tonumber(args[3]), tonumber(args[4]))
  write_share = tonumber(args[5])
end

function request()
  if math.random() < write_share then
    return record()
  end
  return reads[math.random(#reads)]
end
