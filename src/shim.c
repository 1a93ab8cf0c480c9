/*
 * shim.c: the few things aad_auth needs from PostgreSQL that pgrx's bindings do not expose:
 * fields of Port and HbaLine (opaque there), the password exchange (auth.c keeps its own
 * static), and ereport with a detail for the server log only. Compiled against the server's
 * own headers, so the struct layouts always match the server that loads the library.
 */
#include "postgres.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_shseclabel.h"
#include "libpq/auth.h"
#include "libpq/hba.h"
#include "libpq/libpq.h"
#include "libpq/libpq-be.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "postmaster/postmaster.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "storage/ipc.h"

/* PostgreSQL's own bound on a password message (auth.c). */
#define AAD_MAX_PASSWORD_MESSAGE 65535

/* What the hook needs to know about a connection, copied out of Port. */
typedef struct AadPortInfo
{
	const char *user_name;
	const char *database_name;
	const char *remote_host;
	int			is_unix_socket;
	int			method;			/* AAD_METHOD_* */
	int			hba_line;
	int			encrypted;		/* SSL or GSS encryption in use */
	int			addr_family;	/* 4, 6, or 0 when not an IP address */
	unsigned char addr[16];		/* the client's address, network order */
} AadPortInfo;

enum
{
	AAD_METHOD_OTHER = 0,
	AAD_METHOD_TRUST = 1,
	/* a password checked by the server or by another service: password, md5, scram-sha-256,
	 * ldap, pam, radius, bsd */
	AAD_METHOD_PASSWORD = 2,
};

void
aad_auth_port_info(Port *port, AadPortInfo *out)
{
	out->user_name = port->user_name;
	out->database_name = port->database_name;
	out->remote_host = port->remote_host;
	out->is_unix_socket = port->raddr.addr.ss_family == AF_UNIX;
	out->method = AAD_METHOD_OTHER;
	out->hba_line = 0;
	out->encrypted = port->ssl_in_use;
#ifdef ENABLE_GSS
	if (be_gssapi_get_enc(port))
		out->encrypted = 1;
#endif
	out->addr_family = 0;
	memset(out->addr, 0, sizeof(out->addr));
	if (port->raddr.addr.ss_family == AF_INET)
	{
		const struct sockaddr_in *in4 = (const struct sockaddr_in *) &port->raddr.addr;

		out->addr_family = 4;
		memcpy(out->addr, &in4->sin_addr, 4);
	}
	else if (port->raddr.addr.ss_family == AF_INET6)
	{
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) &port->raddr.addr;

		out->addr_family = 6;
		memcpy(out->addr, &in6->sin6_addr, 16);
	}
	if (port->hba != NULL)
	{
		UserAuth	m = port->hba->auth_method;

		out->hba_line = port->hba->linenumber;
		if (m == uaTrust)
			out->method = AAD_METHOD_TRUST;
		else if (m == uaPassword || m == uaMD5 || m == uaSCRAM || m == uaLDAP ||
				 m == uaPAM || m == uaRADIUS || m == uaBSD)
			out->method = AAD_METHOD_PASSWORD;
		/* a local line is never governed, whatever the socket */
		if (port->hba->conntype == ctLocal)
			out->is_unix_socket = 1;
	}
}

/*
 * Sends AuthenticationCleartextPassword and reads the PasswordMessage, as auth.c's
 * recv_password_packet does: bounded by PostgreSQL's own limit, NUL-checked.
 * Returns the password (palloc'd, NUL-terminated) and its length in *len.
 * A client that hangs up instead of answering ends the backend quietly, as PostgreSQL does.
 * Protocol violations raise ERROR (FATAL during authentication).
 */
char *
aad_auth_recv_password(Port *port, int *len)
{
	StringInfoData buf;
	int			mtype;

	sendAuthRequest(port, AUTH_REQ_PASSWORD, NULL, 0);
	pq_startmsgread();
	mtype = pq_getbyte();
	if (mtype != 'p')
	{
		if (mtype != EOF)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("expected password response, got message type %d",
							mtype)));
		proc_exit(0);
	}
	initStringInfo(&buf);
	if (pq_getmessage(&buf, AAD_MAX_PASSWORD_MESSAGE))
		proc_exit(0);			/* EOF, or over the limit: already logged */
	if (strlen(buf.data) + 1 != (size_t) buf.len)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("invalid password packet size")));
	*len = buf.len - 1;
	return buf.data;
}

/*
 * Records who signed in: the session's authenticated identity (SYSTEM_USER on 16+, and the
 * "connection authenticated" line of log_connections).
 */
void
aad_auth_set_identity(Port *port, const char *id)
{
#if PG_VERSION_NUM >= 180000
	set_authn_id(port, id);
#else
	/* auth.c's set_authn_id is static before 18: the same steps. */
	const char *stored;

#if PG_VERSION_NUM >= 160000
	if (MyClientConnectionInfo.authn_id != NULL)
		return;
	MyClientConnectionInfo.authn_id = MemoryContextStrdup(TopMemoryContext, id);
	MyClientConnectionInfo.auth_method = port->hba->auth_method;
	stored = MyClientConnectionInfo.authn_id;
#else
	if (port->authn_id != NULL)
		return;
	port->authn_id = MemoryContextStrdup(TopMemoryContext, id);
	stored = port->authn_id;
#endif
	if (Log_connections)
		ereport(LOG,
				errmsg("connection authenticated: identity=\"%s\" method=%s (%s:%d)",
					   stored, hba_authname(port->hba->auth_method), HbaFileName,
					   port->hba->linenumber));
#endif
}

/*
 * Ends the connection: ereport(FATAL) with SQLSTATE `sqlstate` (five characters), a message
 * for the client and a detail for the server log only. FATAL exits the process; it never
 * returns (and never longjmps through Rust frames).
 */
__attribute__((noreturn)) void
aad_auth_fatal(const char *sqlstate, const char *message, const char *detail_log)
{
	ereport(FATAL,
			(errcode(MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2],
								   sqlstate[3], sqlstate[4])),
			 errmsg("%s", message),
			 detail_log ? errdetail_log("%s", detail_log) : 0));
	pg_unreachable();
}

/*
 * Shared memory of `size` bytes named `name`: created zeroed by the first caller (the
 * postmaster, from shmem_startup_hook), found by later ones. Under AddinShmemInitLock, as
 * ShmemInitStruct requires.
 */
void *
aad_auth_shmem_zeroed(const char *name, Size size)
{
	bool		found;
	void	   *p;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	p = ShmemInitStruct(name, size, &found);
	if (!found)
		memset(p, 0, size);
	LWLockRelease(AddinShmemInitLock);
	return p;
}

/*
 * The `provider` labels of the roles `roles[0..n)`: labels[i] is a palloc'd copy of role
 * i's label, or NULL when it has none (or no longer exists); "" for a label stored out of line,
 * which a process connected to no database cannot read (and no valid label needs). Read with a
 * plain scan of pg_shseclabel, a shared catalog: what such a process may read (it has no
 * pg_class to open an index with). Must run inside a transaction. Returns false, having read
 * nothing, when the catalog is locked (VACUUM FULL, LOCK TABLE): the caller tries again later
 * rather than wait.
 */
bool
aad_auth_labels_of(const char *provider, const Oid *roles, int n, char **labels)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	int			i;

	for (i = 0; i < n; i++)
		labels[i] = NULL;
	if (!ConditionalLockRelationOid(SharedSecLabelRelationId, AccessShareLock))
		return false;
	rel = table_open(SharedSecLabelRelationId, NoLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_shseclabel form = (Form_pg_shseclabel) GETSTRUCT(tuple);
		bool		isnull;
		Datum		datum;
		char	   *found;

		if (form->classoid != AuthIdRelationId)
			continue;
		datum = heap_getattr(tuple, Anum_pg_shseclabel_provider, RelationGetDescr(rel), &isnull);
		if (isnull)
			continue;
		found = TextDatumGetCString(datum);
		if (strcmp(found, provider) != 0)
			continue;
		datum = heap_getattr(tuple, Anum_pg_shseclabel_label, RelationGetDescr(rel), &isnull);
		if (isnull)
			continue;
		for (i = 0; i < n; i++)
			if (roles[i] == form->objoid && labels[i] == NULL)
				labels[i] = VARATT_IS_EXTERNAL(DatumGetPointer(datum)) ?
					pstrdup("") : TextDatumGetCString(datum);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return true;
}
