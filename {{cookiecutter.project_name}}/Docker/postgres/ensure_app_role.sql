-- The application's own database role: run by script/deploy (ensure_app_role
-- in script/functions/swarm) as the bootstrap superuser, in one transaction,
-- before every migration. Idempotent: it creates the role when missing, sets
-- its password from the file, and makes it the owner of the database and of
-- every object in the database's own schemas, so Lucky, Hasura and restores
-- can work without the superuser.
--   PGAPP_PASSWORD_FILE=PATH psql -X -v role=NAME --single-transaction -f ensure_app_role.sql
--
-- Not superuser, so neither `COPY ... TO/FROM PROGRAM` nor untrusted
-- languages nor server files: the privileges the pg_execute_server_program
-- and pg_read/write_server_files roles carry are a superuser's by default
-- (PostgreSQL docs, "Predefined Roles", and sql-copy: "COPY naming a file or
-- command is only allowed to database superusers or users who are granted one
-- of the roles pg_read_server_files, pg_write_server_files, or
-- pg_execute_server_program"). CREATEDB only because Lucky's db.create runs
-- CREATE DATABASE at every migration and PostgreSQL refuses it (permission
-- denied) before it looks whether the database exists (avram v1.5.0
-- src/avram/migrator/runner.cr, create_db; PostgreSQL dbcommands.c createdb).
--
-- Hasura (hasura/graphql-engine docs/docs/deployment/postgres-requirements.mdx,
-- "A single role to manage metadata and user objects in the same database")
-- needs read & write on hdb_catalog, which it creates (the owner of the
-- database may: CREATE on the database), and the pgcrypto extension, which it
-- creates in public when missing: pgcrypto is a trusted extension since
-- PostgreSQL 13 (contrib/pgcrypto/pgcrypto.control, trusted = true), so the
-- database owner may create it. An extension created earlier by the superuser
-- keeps that owner (PostgreSQL has no ALTER EXTENSION ... OWNER); Hasura only
-- uses it, and a restore drops it with its schema and creates it anew.
--
-- REASSIGN OWNED BY the superuser is refused (the bootstrap superuser owns
-- the system objects), so each object is handed over by ALTER ... OWNER.
\set ON_ERROR_STOP on
\set password `cat "$PGAPP_PASSWORD_FILE"`

SELECT format('CREATE ROLE %I', :'role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec

ALTER ROLE :"role" WITH LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'password';
\unset password

SELECT format('ALTER DATABASE %I OWNER TO %I', current_database(), :'role') \gexec

-- The database's own schemas: all but the system's.
CREATE TEMP VIEW app_schemas AS
  SELECT oid, nspname, nspowner FROM pg_namespace
  WHERE nspname !~ '^pg_' AND nspname <> 'information_schema';

-- member_of_extension(classid, objid): the object belongs to an extension
-- (its owner is the extension's business, not ours).
CREATE FUNCTION pg_temp.member_of_extension(regclass, oid) RETURNS boolean
  LANGUAGE sql STABLE
  AS $$ SELECT EXISTS (SELECT FROM pg_depend WHERE classid = $1 AND objid = $2 AND deptype = 'e') $$;

-- A schema owned by pg_database_owner (public, since PostgreSQL 15) is
-- already the database owner's, and stays so: pg_dump writes no CREATE for
-- public then, and a restore counts on that.
SELECT format('ALTER SCHEMA %I OWNER TO %I', nspname, :'role')
FROM app_schemas WHERE nspowner <> 'pg_database_owner'::regrole \gexec

-- Tables, views, materialized views, foreign tables, standalone composite
-- types and sequences; a sequence a column owns (serial, identity) follows
-- its table.
SELECT format('ALTER %s %I.%I OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                             WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'S' THEN 'SEQUENCE'
                             WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END,
              s.nspname, c.relname, :'role')
FROM pg_class c JOIN app_schemas s ON s.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c', 'S')
  AND NOT pg_temp.member_of_extension('pg_class', c.oid)
  AND NOT (c.relkind = 'S' AND EXISTS (
    SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
      AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
ORDER BY c.oid \gexec

-- Functions, procedures and aggregates.
SELECT format('ALTER %s %s OWNER TO %I',
              CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
              p.oid::regprocedure, :'role')
FROM pg_proc p JOIN app_schemas s ON s.oid = p.pronamespace
WHERE NOT pg_temp.member_of_extension('pg_proc', p.oid)
ORDER BY p.oid \gexec

-- Domains, enums, ranges and multiranges (table row and array types follow
-- their table or element).
SELECT format('ALTER %s %s OWNER TO %I',
              CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype, :'role')
FROM pg_type t JOIN app_schemas s ON s.oid = t.typnamespace
WHERE t.typtype IN ('d', 'e', 'r', 'm')
  AND NOT pg_temp.member_of_extension('pg_type', t.oid)
ORDER BY t.oid \gexec
