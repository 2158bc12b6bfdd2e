require "./app"

Habitat.raise_if_missing_settings!

if LuckyEnv.development?
  Avram::Migrator::Runner.new.ensure_migrated!
  Avram::SchemaEnforcer.ensure_correct_column_mappings!
end

app_server = AppServer.new
puts "Listening on http://#{app_server.host}:#{app_server.port} (version #{App::VERSION})"

# On SIGTERM keep serving for SHUTDOWN_DELAY seconds (production: 10), so
# Traefik stops sending requests here before the server closes: rolling
# updates lose no requests.
shutdown_delay = (ENV["SHUTDOWN_DELAY"]? || "0").to_i
Signal::INT.trap do
  app_server.close
end
Signal::TERM.trap do
  spawn do
    sleep shutdown_delay.seconds
    app_server.close
  end
end

app_server.listen
