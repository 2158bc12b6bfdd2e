class AppDatabase < Avram::Database
end
