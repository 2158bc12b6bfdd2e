require "./server"

# Lucky::Session's `key` has no default (Habitat setting in luckyframework/lucky
# v1.5.0, src/lucky/cookies/session.cr): the app refuses to start without it. This
# API keeps no browser session, but the setting is still required.
Lucky::Session.configure do |settings|
  settings.key = "_app_session"
end

Lucky::CookieJar.configure do |settings|
  settings.on_set = ->(cookie : HTTP::Cookie) {
    cookie.secure(true)
    cookie.http_only(true)
    cookie.samesite(:lax)
    cookie.path("/")
  }
end
