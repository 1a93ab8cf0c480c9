-- Microsoft's documented SQL for Microsoft Entra principals on Azure Database for PostgreSQL
-- Flexible Server, run unchanged (psql -v ON_ERROR_STOP=1 -f, connected to database `postgres`,
-- as Microsoft's pages say) by tests/azure_scripts.rs, once as the superuser over the unix socket
-- and once as an Entra admin signed in with a token. Files, in the order the test runs them:
--   manage_entra_roles.sql   create, label, rebind, list (this file; database postgres)
--   app_database_grants.sql  grants inside the application's database (database restaurants_reviews)
--   drop_entra_roles.sql     DROP ROLE (run after the test has signed in as the roles it drops)
--   group_sync.sql           group sync (its own test, on a server with pgaadauth.enable_group_sync)
--
-- Where each statement's shape comes from (the tag before each statement below):
-- [MS-MANAGE-2022] https://learn.microsoft.com/azure/postgresql/flexible-server/how-to-manage-azure-ad-users
--     MicrosoftDocs/azure-docs articles/postgresql/flexible-server/how-to-manage-azure-ad-users.md,
--     revision of 2022-11-04: the "For example:" statements and `select * from pgaadauth_list_principals(true);`.
-- [MS-MANAGE] https://learn.microsoft.com/azure/postgresql/security/security-manage-entra-users
--     MicrosoftDocs/azure-databases-docs articles/postgresql/security/security-manage-entra-users.md
--     (2025-10-06; the same text is in how-to-manage-azure-ad-users.md of that repository and of
--     MicrosoftDocs/azure-docs, 2024-06-20): `select * from pg_catalog.pgaadauth_list_principals(..)`,
--     `select * from pg_catalog.pgaadauth_create_principal(..)`, `.._with_oid(..)`,
--     `SECURITY LABEL for "pgaadauth" on role "<roleName>" is 'aadauth,oid=<objectId>,type=<objectType>,admin';`,
--     `DROP ROLE rolename;`, and the rule "for guest users, include the full name in their home
--     domain with #EXT# tag".
-- [MS-MI] https://learn.microsoft.com/azure/postgresql/security/security-connect-with-managed-identity
--     MicrosoftDocs/azure-databases-docs articles/postgresql/security/security-connect-with-managed-identity.md:
--     `select * from pgaadauth_create_principal('<identity_name>', false, false);`
-- [MS-PY-ACA] https://learn.microsoft.com/azure/developer/python/tutorial-deploy-python-web-app-azure-container-apps-02
--     MicrosoftDocs/azure-dev-docs articles/python/tutorial-deploy-python-web-app-azure-container-apps-02.md
--     (2024-01-31), "Configure the managed identity on the PostgreSQL database": the --querytext of
--     `az postgres flexible-server execute --database-name postgres`, as the SQL the shell hands over.
-- [MS-CONFIGURE] https://learn.microsoft.com/azure/postgresql/security/security-entra-configure
--     MicrosoftDocs/azure-databases-docs articles/postgresql/security/security-entra-configure.md
--     (2026-02-19), "Create a group principal": `select * from  pgaadauth_create_principal('Prod DB Readonly', false, false).`
--     ("If you disable group sync, members can sign in by using their access tokens and specify
--     the group name as username"). The page ends the statement with a full stop where its
--     semicolon belongs, which no server accepts; it ends with `;` here (the double space is kept).
-- [MS-JAVA] MicrosoftDocs/azure-dev-docs articles/java/spring-framework/includes/create-postgresql-flexible-server-non-admin-user.md
--     (included by the Spring passwordless tutorials on learn.microsoft.com):
--     `az connection create postgres-flexible --connection postgres_conn --database demo --user-account`,
--     which runs [MS-SC]'s SQL.
-- [MS-SC] Azure/azure-cli-extensions src/serviceconnector-passwordless/azext_serviceconnector_passwordless/_credential_free.py,
--     PostgresFlexHandler.get_create_query: what Service Connector runs connected to `postgres`
--     (role aad_<connection>, type user for --user-account).
-- [MS-AZD] Azure/azure-dev templates/common/infra/terraform/core/security/passwordless/postgresql/scripts/pg-create-aad-role.sh:
--     `select * from pgaadauth_create_principal_with_oid('${CUSTOM_ROLE}', '${APPLICATION_IDENTITY_APPID}', 'service', false, false);`
--     (a service role bound to the application's client id rather than its object id).
-- [MS-SKILL] microsoft/GitHub-Copilot-for-Azure plugin/skills/azure-postgres/references/
--     (TROUBLESHOOTING.md, GROUP-SYNC.md, PERMISSION-TEMPLATES.md) and that skill's SQL sheet
--     "SQL Functions for Azure PostgreSQL Entra ID Authentication" (found by its text; the index
--     does not name its path): `SELECT * FROM pgaadauth_create_principal('user@domain.com', false, false);`,
--     `SELECT * FROM pgaadauth_create_principal('admin@domain.com', true, false);`, the four
--     `SECURITY LABEL for "pgaadauth" on role "existing_..." \n  is '...';` statements (with their
--     trailing space), `DROP ROLE "user@domain.com";`.
-- [PUBLIC-UPDATE] pgaadauth_update_principal_with_oid is not in Microsoft's pages; its shape is the
--     one public deployment scripts run against Azure, e.g.
--     `select pgaadauth_update_principal_with_oid('$escapedName', '$escapedObjectId', 'service', false, false);`
--     (found with find_string; the index does not name those repositories).
--
-- Microsoft's spelling, quoting, case and layout are kept. Only Microsoft's placeholders are filled
-- in: names where the docs write <roleName>/<identity_name>/${CUSTOM_ROLE}, and object ids where
-- they write <objectId>/<object-id>/00000000-0000-0000-0000-000000000000. The object ids are written
-- here literally (the test's constants, see tests/azure_scripts.rs) rather than as psql variables:
-- a psql variable cannot be interpolated inside a quoted literal, so `is 'aadauth,oid=...,type=user'`
-- would have to become `is :'label'` and lose Microsoft's shape, and a file the test rewrote before
-- running would not be the file checked in. The test runs these bytes as they are.
--
-- Prerequisites the test creates first (not Microsoft's statements; the docs assume them): the
-- ordinary roles existing_role, existing_admin, existing_group_role and existing_app_role (LOGIN,
-- with a password), and the database demo (what Service Connector connects the app to).

-- List Microsoft Entra roles [MS-MANAGE-2022]
select * from pgaadauth_list_principals(true);

-- Create a role using Microsoft Entra principal name [MS-MANAGE-2022]
select * from pgaadauth_create_principal('mary@contoso.com', false, false);

-- Create role for a user / as admin (by name - must match UPN exactly) [MS-SKILL]
SELECT * FROM pgaadauth_create_principal('user@domain.com', false, false);
SELECT * FROM pgaadauth_create_principal('admin@domain.com', true, false);

-- A guest user: the full name in their home domain with the #EXT# tag [MS-MANAGE], shape of [MS-MANAGE-2022]
select * from pgaadauth_create_principal('mary_fabrikam.com#EXT#@contoso.onmicrosoft.com', false, false);

-- A user with multifactor authentication enforced, schema-qualified [MS-MANAGE]
select * from pg_catalog.pgaadauth_create_principal('mfa.user@contoso.com', false, true);

-- A user-assigned managed identity by its name [MS-PY-ACA] (also [MS-MI]), then the list
select * from pgaadauth_create_principal('my-ua-managed-id', false, false);select * from pgaadauth_list_principals(false);

-- Create a group principal (role) by its display name; members sign in with the group name [MS-CONFIGURE]
select * from  pgaadauth_create_principal('Prod DB Readonly', false, false);

-- Create a role using Microsoft Entra object identifier [MS-MANAGE-2022]
select * from pgaadauth_create_principal_with_oid('accounting_application', '7c0a1d2e-3f4b-4a5c-8d6e-000000000007', 'service', false, false);

-- A group by object id, schema-qualified [MS-MANAGE] (group names may hold spaces)
select * from pg_catalog.pgaadauth_create_principal_with_oid('Accounting Readers', '7c0a1d2e-3f4b-4a5c-8d6e-00000000000d', 'group', false, false);

-- By object ID (for managed identities/service principals) [MS-SKILL]
SELECT * FROM pgaadauth_create_principal_with_oid('my-identity', '7c0a1d2e-3f4b-4a5c-8d6e-000000000008', 'service', false, false);

-- A service role bound to the application's client id [MS-AZD]
select * from pgaadauth_create_principal_with_oid('my-app-identity', '7c0a1d2e-3f4b-4a5c-8d6e-00000000000c', 'service', false, false);

-- Service Connector, --user-account, connection postgres_conn, database demo [MS-JAVA] [MS-SC]
select * from pgaadauth_create_principal_with_oid('aad_postgres_conn', '7c0a1d2e-3f4b-4a5c-8d6e-00000000000a', 'user', false, false);
GRANT ALL PRIVILEGES ON DATABASE "demo" TO "aad_postgres_conn";
GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO "aad_postgres_conn";
GRANT ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA public TO "aad_postgres_conn";

-- Enable Microsoft Entra authentication for an existing PostgreSQL role [MS-SKILL] ([MS-MANAGE])
SECURITY LABEL for "pgaadauth" on role "existing_role" 
  is 'aadauth,oid=7c0a1d2e-3f4b-4a5c-8d6e-00000000000e,type=user';

SECURITY LABEL for "pgaadauth" on role "existing_admin" 
  is 'aadauth,oid=7c0a1d2e-3f4b-4a5c-8d6e-00000000000f,type=user,admin';

SECURITY LABEL for "pgaadauth" on role "existing_group_role" 
  is 'aadauth,oid=7c0a1d2e-3f4b-4a5c-8d6e-000000000010,type=group';

SECURITY LABEL for "pgaadauth" on role "existing_app_role" 
  is 'aadauth,oid=7c0a1d2e-3f4b-4a5c-8d6e-000000000011,type=service';

-- The managed identity behind my-identity was re-created: a new object id, same role [PUBLIC-UPDATE]
select pgaadauth_update_principal_with_oid('my-identity', '7c0a1d2e-3f4b-4a5c-8d6e-000000000009', 'service', false, false);

-- List Microsoft Entra roles, admins and all, schema-qualified [MS-MANAGE]
select * from pg_catalog.pgaadauth_list_principals(true);
select * from pg_catalog.pgaadauth_list_principals(false);
