-- Microsoft's documented SQL for group sync (Azure's server parameter pgaadauth.enable_group_sync
-- = ON), run unchanged by tests/azure_scripts.rs (psql -v ON_ERROR_STOP=1 -f, database postgres),
-- as the superuser and as an Entra admin, on a server started with pgaadauth.enable_group_sync = on
-- and a Microsoft Graph stand-in that lists each group's members.
--
-- Where each statement's shape comes from:
-- [MS-CONFIGURE] https://learn.microsoft.com/azure/postgresql/security/security-entra-configure
--     MicrosoftDocs/azure-databases-docs articles/postgresql/security/security-entra-configure.md
--     (2026-02-19), "Authenticate with Microsoft Entra ID as a group member": the group principal
--     by display name, "You can trigger manual sync by using:
--     `SELECT * FROM pgaadauth_sync_roles_for_group_members();`", and "Group logins remain
--     available for compatibility reasons but you can disable them by using:
--     `ALTER ROLE "ROLE_NAME" NOLOGIN;`". The page writes the first statement with a full stop
--     where its semicolon belongs (`... false, false).`), which no server accepts; it ends with `;` here.
-- [MS-SKILL] microsoft/GitHub-Copilot-for-Azure plugin/skills/azure-postgres/references/GROUP-SYNC.md,
--     "Mode 2: Group Sync Enabled" (create the group role by object id, grant to it, sync),
--     "Checking Sync Status" and "Group Role Management" (`ALTER ROLE "Database Readers" NOLOGIN;`).
--
-- The group's object id is written literally (the test's constant), for the reasons given at the
-- top of manage_entra_roles.sql. Prerequisites the test creates first, as the runner: the
-- database mydb and a table public.reviews in database postgres.

-- Create the group principal (role) in the database [MS-CONFIGURE]
select * from  pgaadauth_create_principal('Prod DB Readonly', false, false);

-- [MS-SKILL] Mode 2: Group Sync Enabled
SELECT * FROM pgaadauth_create_principal_with_oid('Database Readers', '7c0a1d2e-3f4b-4a5c-8d6e-000000000021', 'group', false, false);

-- Grant permissions to the group (inherited by synced members)
GRANT CONNECT ON DATABASE mydb TO "Database Readers";
GRANT USAGE ON SCHEMA public TO "Database Readers";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO "Database Readers";

-- Trigger manual sync (optional, otherwise wait 30 min)
SELECT * FROM pgaadauth_sync_roles_for_group_members();

-- Checking Sync Status [MS-SKILL]
SELECT * FROM pgaadauth_list_principals(false);

-- CORRECT: Disable login if needed, but keep the role [MS-SKILL] ([MS-CONFIGURE])
ALTER ROLE "Database Readers" NOLOGIN;
