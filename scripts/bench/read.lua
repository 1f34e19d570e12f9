-- GET a random path from the file named by the first script argument.
-- usage: wrk ... -s read.lua URL -- PATHS_FILE
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local reads

setup = common.setup
done = common.done

function init(args)
  common.seed_random()
  reads = common.load_reads(args[1])
end

function request()
  return reads[math.random(#reads)]
end
