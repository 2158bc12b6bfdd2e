# What is running: the commit the image was built from (APP_VERSION, set by
# script/build and the deploy scripts) and when this binary was compiled.
module App
  VERSION     = ENV["APP_VERSION"]? || "development"
  BUILT_AT    = {{ `date -u +%Y-%m-%dT%H:%M:%SZ`.stringify.chomp }}
  ENVIRONMENT = LuckyEnv.environment

  {% if flag?(:release) %}
    BUILD = "release"
  {% else %}
    BUILD = "debug"
  {% end %}
end
