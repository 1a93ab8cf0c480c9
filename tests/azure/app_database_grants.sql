-- Microsoft's grants for an Entra principal inside the application's database, run unchanged by
-- tests/azure_scripts.rs connected to database restaurants_reviews (psql -v ON_ERROR_STOP=1 -f),
-- as the superuser and as an Entra admin, after manage_entra_roles.sql made "my-ua-managed-id".
--
-- Source: https://learn.microsoft.com/azure/developer/python/tutorial-deploy-python-web-app-azure-container-apps-02
-- MicrosoftDocs/azure-dev-docs articles/python/tutorial-deploy-python-web-app-azure-container-apps-02.md
-- (2024-01-31), "Configure the managed identity on the PostgreSQL database", step 3:
-- `az postgres flexible-server execute --database-name restaurants_reviews --querytext "..."`;
-- the page lists the SQL that command issues, copied here as the page shows it.
--
-- Prerequisites the test creates first, as the runner (the tutorial's earlier steps and the app's
-- migrations): the database restaurants_reviews and a table public.restaurant in it.

GRANT CONNECT ON DATABASE restaurants_reviews TO "my-ua-managed-id";
GRANT USAGE ON SCHEMA public TO "my-ua-managed-id";
GRANT CREATE ON SCHEMA public TO "my-ua-managed-id";
GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO "my-ua-managed-id";
ALTER DEFAULT PRIVILEGES IN SCHEMA public
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "my-ua-managed-id";
