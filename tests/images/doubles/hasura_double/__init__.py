"""Contract double for hasura/graphql-engine v2 (cli-migrations-v3). Test code."""
