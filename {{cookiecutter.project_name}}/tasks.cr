# The task runner. Images compile it to `lucky_tasks`:
#   lucky_tasks db.create | db.migrate | db.rollback_to VERSION | db.seed.required_data
ENV["LUCKY_TASK"] = "true"

require "./src/app"
require "lucky_task"
require "./tasks/**"
require "./db/migrations/**"
require "lucky/tasks/**"
require "avram/lucky/tasks"

LuckyTask::Runner.run
