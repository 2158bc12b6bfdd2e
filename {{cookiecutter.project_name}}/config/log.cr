# Docker collects stdout: JSON lines in production, readable lines elsewhere.
# Dexter's `configure` takes a Log::Severity (luckyframework/dexter v0.3.4,
# src/dexter/log.cr); a symbol only autocasts as a direct argument, so the
# level is chosen as a Severity value first.
backend = Log::IOBackend.new
if LuckyEnv.production?
  backend.formatter = Dexter::JSONLogFormatter.proc
  level = Log::Severity::Info
else
  backend.formatter = Lucky::PrettyLogFormatter.proc
  level = Log::Severity::Debug
end

Log.dexter.configure(level, backend)
DB::Log.level = :info
Avram::QueryLog.dexter.configure(LuckyEnv.production? ? Log::Severity::None : Log::Severity::Info)
Avram::SaveFailedLog.dexter.configure(:warn)
Lucky::ContinuedPipeLog.dexter.configure(:none)
