# Server settings. Production reads everything from the environment and
# refuses to start without it; development reads config/watch.yml.
Lucky::Server.configure do |settings|
  if LuckyEnv.production?
    settings.secret_key_base = secret_key_from_env
    settings.host = "0.0.0.0"
    settings.port = required_env("PORT").to_i
    settings.gzip_enabled = true
  else
    settings.secret_key_base = ENV["SECRET_KEY_BASE"]? || "development-only-secret-key-base-0123456789"
    settings.host = ENV["HOST"]? || Lucky::ServerSettings.host
    settings.port = (ENV["PORT"]? || Lucky::ServerSettings.port).to_i
  end
  settings.asset_host = ""
end

# TLS ends at Traefik; the app itself never redirects.
Lucky::ForceSSLHandler.configure do |settings|
  settings.enabled = false
end

private def secret_key_from_env
  required_env("SECRET_KEY_BASE")
end

# An unset or empty variable stops the app with a message naming it.
def required_env(name : String) : String
  value = ENV[name]?
  return value if value && !value.empty?
  STDERR.puts "Missing environment variable #{name}: the app cannot start without it."
  exit(1)
end
