ENV["LUCKY_ENV"] = "test"
ENV["PORT"] ||= "5001"
require "spec"
require "../src/app"
require "./support/**"
require "../db/migrations/**"
require "./setup/**"

include Carbon::Expectations

Habitat.raise_if_missing_settings!
