"""Contract double for hasura/graphql-engine v2 (the cli-migrations-v3 image). Test code.

Every behaviour follows a file of the upstream repository at the tag the
template pins (`SOURCE_TAG`); the comment next to the code names the file.
Where the double cannot follow the source (no console UI, one data source
kind), it says so.
"""

SOURCE_TAG = "v2.51.0"
