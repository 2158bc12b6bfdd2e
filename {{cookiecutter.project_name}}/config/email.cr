# SendGrid in production: set SEND_GRID_KEY, or "unused" to send no mail.
BaseEmail.configure do |settings|
  if LuckyEnv.production? && send_grid_key != "unused"
    settings.adapter = Carbon::SendGridAdapter.new(api_key: send_grid_key)
  else
    settings.adapter = Carbon::DevAdapter.new(print_emails: LuckyEnv.development?)
  end
end

private def send_grid_key : String
  LuckyEnv.production? ? required_env("SEND_GRID_KEY") : "unused"
end
