-- aad_auth 0.1.0 -> 0.2.0: the SQL API moves to pg_catalog, where Azure keeps it, so that bare
-- and pg_catalog-qualified calls (Microsoft's scripts use both) work with any search_path.
--
-- Rather than moved, the functions of 0.1.0 are dropped from the schema they were installed in
-- and created again in pg_catalog, exactly as 0.2.0's install script creates them
-- (tests/upgrade.rs compares the two). Roles, labels and azure_pg_admin live in shared catalogs
-- and are not touched. A view or function of yours that depends on one of these functions makes
-- the update fail (nothing is changed then): drop it first and create it again afterwards.

DROP FUNCTION @extschema@.pgaadauth_list_principals(boolean);
DROP FUNCTION @extschema@.aad_auth_principals(boolean);
DROP FUNCTION @extschema@.aad_auth_jwks_status();
DROP FUNCTION @extschema@.pgaadauth_create_principal(text, boolean, boolean);
DROP FUNCTION @extschema@.pgaadauth_create_principal_with_oid(text, text, text, boolean, boolean);
DROP FUNCTION @extschema@.pgaadauth_drop_principal(text);
DROP FUNCTION @extschema@.pgaadauth_update_principal_with_oid(text, text, text, boolean, boolean);

-- The extension's schema is now pg_catalog (what the control file says for new installs; a
-- later update script's @extschema@, and pg_dump's CREATE EXTENSION, follow it).
UPDATE pg_catalog.pg_extension SET extnamespace = 'pg_catalog'::pg_catalog.regnamespace
WHERE extname = 'aad_auth';
-- ... and it no longer depends on the schema 0.1.0 was installed in (pg_catalog is pinned and
-- needs no such record), so that schema can be dropped without taking the extension along.
DELETE FROM pg_catalog.pg_depend
WHERE classid = 'pg_catalog.pg_extension'::pg_catalog.regclass
  AND objid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'aad_auth')
  AND refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass;

CREATE FUNCTION pg_catalog.aad_auth_jwks_status() RETURNS TABLE (
	"source" TEXT,
	"key_ids" TEXT[],
	"generation" bigint,
	"last_success" timestamp with time zone,
	"last_failure" timestamp with time zone,
	"last_error" TEXT,
	"fetches" bigint,
	"failures" bigint,
	"worker_pid" INT
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'aad_auth_jwks_status_wrapper';

CREATE FUNCTION pg_catalog.aad_auth_principals(
	"isadminvalue" bool
) RETURNS TABLE (
	"rolname" TEXT,
	"principaltype" TEXT,
	"objectid" TEXT,
	"tenantid" TEXT,
	"ismfa" INT,
	"isadmin" INT
)
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'aad_auth_principals_wrapper';

CREATE FUNCTION pg_catalog.pgaadauth_list_principals(isAdminValue boolean)
RETURNS TABLE(rolname name, principaltype text, objectid text, tenantid text, ismfa int, isadmin int)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT p.rolname::name, p.principaltype, p.objectid, p.tenantid, p.ismfa, p.isadmin
    FROM pg_catalog.aad_auth_principals(isAdminValue) AS p
$fn$;

REVOKE EXECUTE ON FUNCTION pg_catalog.aad_auth_jwks_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_catalog.aad_auth_jwks_status() TO azure_pg_admin;

CREATE FUNCTION pg_catalog.pgaadauth_create_principal(
	"rolename" TEXT,
	"isadmin" bool,
	"ismfa" bool
) RETURNS TEXT
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_create_principal_wrapper';

CREATE FUNCTION pg_catalog.pgaadauth_create_principal_with_oid(
	"rolename" TEXT,
	"objectid" TEXT,
	"objecttype" TEXT,
	"isadmin" bool,
	"ismfa" bool
) RETURNS TEXT
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_create_principal_with_oid_wrapper';

CREATE FUNCTION pg_catalog.pgaadauth_drop_principal(
	"rolename" TEXT
) RETURNS TEXT
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_drop_principal_wrapper';

CREATE FUNCTION pg_catalog.pgaadauth_update_principal_with_oid(
	"rolename" TEXT,
	"objectid" TEXT,
	"objecttype" TEXT,
	"isadmin" bool,
	"ismfa" bool
) RETURNS TEXT
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_update_principal_with_oid_wrapper';

-- Group sync (new in 0.2.0).
CREATE FUNCTION pg_catalog.pgaadauth_sync_roles_for_group_members() RETURNS TABLE (
	"role" TEXT,
	"group" TEXT,
	"action" TEXT
)
STRICT
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_sync_roles_for_group_members_wrapper';

CREATE FUNCTION pg_catalog.aad_auth_group_sync_status() RETURNS TABLE (
	"enabled" bool,
	"worker_pid" INT,
	"running_pid" INT,
	"runs" bigint,
	"failures" bigint,
	"last_started" timestamp with time zone,
	"last_success" timestamp with time zone,
	"last_failure" timestamp with time zone,
	"last_error" TEXT,
	"groups" INT,
	"members" INT,
	"changes" INT
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'aad_auth_group_sync_status_wrapper';

REVOKE EXECUTE ON FUNCTION pg_catalog.aad_auth_group_sync_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_catalog.aad_auth_group_sync_status() TO azure_pg_admin;

-- Sign-in statistics and live sessions (new in 0.2.0).
CREATE FUNCTION pg_catalog.aad_auth_reset_sign_in_stats() RETURNS void
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'aad_auth_reset_sign_in_stats_wrapper';

CREATE FUNCTION pg_catalog.aad_auth_sessions_rows() RETURNS TABLE (
	"pid" INT,
	"rolname" TEXT,
	"oid" TEXT,
	"principal_type" TEXT,
	"name" TEXT,
	"tenant" TEXT,
	"token_expires" timestamp with time zone,
	"method" TEXT
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'aad_auth_sessions_rows_wrapper';

CREATE FUNCTION pg_catalog.aad_auth_sessions()
RETURNS TABLE(pid int, rolname name, oid text, principal_type text, name text, tenant text,
              token_expires timestamptz, method text)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT s.pid, s.rolname::name, s.oid, s.principal_type, s.name, s.tenant, s.token_expires,
           s.method
    FROM pg_catalog.aad_auth_sessions_rows() AS s
    ORDER BY s.pid
$fn$;
REVOKE EXECUTE ON FUNCTION pg_catalog.aad_auth_sessions_rows() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.aad_auth_sessions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_catalog.aad_auth_sessions_rows() TO azure_pg_admin;
GRANT EXECUTE ON FUNCTION pg_catalog.aad_auth_sessions() TO azure_pg_admin;

CREATE FUNCTION pg_catalog.aad_auth_sign_in_stats_rows() RETURNS TABLE (
	"rolname" TEXT,
	"accepted" bigint,
	"refused" bigint,
	"refused_by" jsonb,
	"last_accepted" timestamp with time zone,
	"last_refused" timestamp with time zone
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'aad_auth_sign_in_stats_rows_wrapper';

CREATE FUNCTION pg_catalog.aad_auth_sign_in_stats()
RETURNS TABLE(rolname name, accepted bigint, refused bigint, refused_by jsonb,
              last_accepted timestamptz, last_refused timestamptz)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT s.rolname::name, s.accepted, s.refused, s.refused_by, s.last_accepted, s.last_refused
    FROM pg_catalog.aad_auth_sign_in_stats_rows() AS s
    ORDER BY s.rolname NULLS LAST
$fn$;
REVOKE EXECUTE ON FUNCTION pg_catalog.aad_auth_sign_in_stats_rows() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.aad_auth_sign_in_stats() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.aad_auth_reset_sign_in_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_catalog.aad_auth_sign_in_stats_rows() TO azure_pg_admin;
GRANT EXECUTE ON FUNCTION pg_catalog.aad_auth_sign_in_stats() TO azure_pg_admin;
GRANT EXECUTE ON FUNCTION pg_catalog.aad_auth_reset_sign_in_stats() TO azure_pg_admin;
