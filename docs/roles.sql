-- Least-privilege roles for a disintegrate-c event store (docs/roles.md).
--
--   dis_admin     creates and upgrades the tables (dis_store_migrate,
--                 `disctl init`), resets listeners; owns the tables
--   dis_writer    reads events, appends them, makes decisions (snapshots)
--   dis_listener  reads events, writes its checkpoint and dead letters;
--                 rights on its read-model tables are granted separately
--
-- All three are NOLOGIN group roles: give them to login roles, e.g.
--   CREATE ROLE billing LOGIN PASSWORD '...' IN ROLE dis_writer;
-- A process running policies (listeners that make decisions) needs
-- dis_listener and dis_writer.
--
-- Run it as a superuser (or a role with CREATEROLE that owns the database
-- and its schema), connected to the store's database, once before the
-- first `disctl init` and again after every `disctl init` of a new
-- version, which may add tables:
--   psql -v ON_ERROR_STOP=1 -d mydb -f docs/roles.sql
-- It is idempotent. It uses the schema the tables live in: the first of
-- the search_path (usually public).

-- The group roles (once per cluster).
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['dis_admin', 'dis_writer', 'dis_listener'] LOOP
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			BEGIN
				EXECUTE format('CREATE ROLE %I NOLOGIN', r);
			EXCEPTION WHEN duplicate_object OR unique_violation THEN
				NULL; -- created meanwhile by another session
			END;
		END IF;
	END LOOP;
END $$;

DO $$
DECLARE
	s text := current_schema();
BEGIN
	-- The admin creates the tables; the others only use them.
	EXECUTE format('GRANT CONNECT ON DATABASE %I'
		       ' TO dis_admin, dis_writer, dis_listener',
		       current_database());
	EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO dis_admin', s);
	EXECUTE format('GRANT USAGE ON SCHEMA %I TO dis_writer, dis_listener', s);

	-- Tables made by an earlier migration belong to the admin role, so
	-- every member of it can upgrade them.
	IF to_regclass('event') IS NOT NULL THEN
		ALTER TABLE event OWNER TO dis_admin;
		ALTER SEQUENCE seq_event_event_id OWNER TO dis_admin;
		-- (this also moves the owned sequence event_schema_id_seq)
		ALTER TABLE event_schema OWNER TO dis_admin;
		ALTER FUNCTION dis_lock_keys(bigint[], boolean[]) OWNER TO dis_admin;

		GRANT SELECT, INSERT ON event TO dis_writer;
		GRANT USAGE ON SEQUENCE seq_event_event_id TO dis_writer;
		GRANT SELECT ON event_schema TO dis_writer;
		-- Older clients take an append's advisory locks through this
		-- function; by default PUBLIC could run it.
		REVOKE EXECUTE ON FUNCTION dis_lock_keys(bigint[], boolean[])
			FROM PUBLIC;
		GRANT EXECUTE ON FUNCTION dis_lock_keys(bigint[], boolean[])
			TO dis_writer;

		GRANT SELECT ON event, event_schema TO dis_listener;
	END IF;
	IF to_regclass('snapshot') IS NOT NULL THEN
		ALTER TABLE snapshot OWNER TO dis_admin;
		GRANT SELECT, INSERT, UPDATE ON snapshot TO dis_writer;
	END IF;
	IF to_regclass('event_listener') IS NOT NULL THEN
		ALTER TABLE event_listener OWNER TO dis_admin;
		ALTER TABLE event_dead_letter OWNER TO dis_admin;
		GRANT SELECT, INSERT, UPDATE ON event_listener, event_dead_letter
			TO dis_listener;
	END IF;
END $$;
