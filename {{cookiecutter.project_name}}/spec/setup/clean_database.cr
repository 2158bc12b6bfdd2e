Spec.before_each do
  AppDatabase.truncate
end
