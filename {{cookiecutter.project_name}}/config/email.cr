# Mail in production is MAIL, a setting of the server's env file:
# "sendgrid" sends through SendGrid with SEND_GRID_KEY; "off" (the default)
# sends none, and the app says so when it starts. Development and tests
# print or keep mail, never send it.
BaseEmail.configure do |settings|
  if mail_delivery == "sendgrid"
    settings.adapter = Carbon::SendGridAdapter.new(api_key: required_env("SEND_GRID_KEY"))
  else
    settings.adapter = Carbon::DevAdapter.new(print_emails: LuckyEnv.development?)
  end
end

private def mail_delivery : String
  return "off" unless LuckyEnv.production?
  delivery = ENV.fetch("MAIL", "off")
  unless {"sendgrid", "off"}.includes?(delivery)
    STDERR.puts "MAIL must be sendgrid or off, not #{delivery.inspect}: the app cannot start."
    exit 1
  end
  STDERR.puts "MAIL=off: this app sends no e-mail (MAIL=sendgrid in the server's env file sends through SendGrid)." if delivery == "off"
  delivery
end
