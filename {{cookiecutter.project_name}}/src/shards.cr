# Load a local .env when one exists (development only; containers get real env vars).
require "lucky_env"
LuckyEnv.load?(".env")

require "lucky"
require "avram/lucky"
require "carbon"
require "carbon_sendgrid_adapter"
