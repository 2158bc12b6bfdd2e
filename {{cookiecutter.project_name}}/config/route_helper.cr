# Base URL for generated links. APP_DOMAIN is required in production.
Lucky::RouteHelper.configure do |settings|
  if LuckyEnv.production?
    settings.base_uri = "https://api.#{required_env("APP_DOMAIN")}"
  else
    settings.base_uri = "http://localhost:#{Lucky::ServerSettings.port}"
  end
end
