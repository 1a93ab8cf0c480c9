-- Microsoft's way to drop Microsoft Entra roles, run unchanged by tests/azure_scripts.rs
-- (psql -v ON_ERROR_STOP=1 -f, database postgres), as the superuser and as an Entra admin, after
-- the test has signed in as both roles with their tokens (so it can show that the drop ended that).
--
-- [MS-SKILL] microsoft/GitHub-Copilot-for-Azure azure-postgres skill, SQL sheet "SQL Functions for
--     Azure PostgreSQL Entra ID Authentication" ("-- Drop an Entra-mapped role"), and
--     plugin/skills/azure-postgres/references/PERMISSION-TEMPLATES.md (`DROP ROLE "<role-name>";`).
-- [MS-MANAGE] https://learn.microsoft.com/azure/postgresql/security/security-manage-entra-users
--     MicrosoftDocs/azure-databases-docs articles/postgresql/security/security-manage-entra-users.md,
--     "Drop a role with a Microsoft Entra principal name": `DROP ROLE rolename;` (and "any
--     Microsoft Entra role that is created in PostgreSQL must be dropped using a Microsoft Entra
--     Admin", how-to-manage-azure-ad-users.md).
--
-- Both roles were made by manage_entra_roles.sql.

-- Drop an Entra-mapped role [MS-SKILL]
DROP ROLE "user@domain.com";

-- [MS-MANAGE]
DROP ROLE accounting_application;
