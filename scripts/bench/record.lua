-- POST a new round on a fresh call: three offers per call, each thread its own calls.
-- usage: wrk ... -s record.lua URL -- FIRST_CALL_ID CALLS_PER_THREAD WINDOW
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local record

setup = common.setup
done = common.done

function init(args)
  record = common.recorder(tonumber(args[1]), tonumber(args[2]), tonumber(args[3]))
end

function request()
  return record()
end
