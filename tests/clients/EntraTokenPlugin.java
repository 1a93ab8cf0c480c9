// docs/clients.md, pgjdbc: the class between the recipe markers is the documented recipe's
// plugin, with the token provider the tests use in place of Azure Identity (tokens from the
// aad-auth-mint command in AAD_MINT, one per call; AAD_STATIC=1 hands out the first for ever).
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.postgresql.plugin.AuthenticationPlugin;
import org.postgresql.plugin.AuthenticationRequestType;
import org.postgresql.util.PSQLException;
import org.postgresql.util.PSQLState;

// recipe: pgjdbc
public class EntraTokenPlugin implements AuthenticationPlugin {
    // pgjdbc asks for the password once per new connection: each gets a fresh token.
    @Override
    public char[] getPassword(AuthenticationRequestType type) throws PSQLException {
        try {
            return EntraToken.get().toCharArray();
        } catch (Exception e) {
            throw new PSQLException("no Entra ID token: " + e.getMessage(), PSQLState.CONNECTION_UNABLE_TO_CONNECT, e);
        }
    }
}
// end recipe

class EntraToken {
    static String first;
    static long firstExpiry = -1;
    static int fetched;

    static synchronized String get() throws Exception {
        if ("1".equals(System.getenv("AAD_STATIC")) && first != null) return first;
        List<String> cmd = new ArrayList<>();
        String json = System.getenv("AAD_MINT").trim();
        for (String part : json.substring(1, json.length() - 1).split("\",\\s*\"")) {
            cmd.add(part.replaceAll("^\\s*\"|\"\\s*$", ""));
        }
        Process p = new ProcessBuilder(cmd).redirectErrorStream(false).start();
        String token = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        if (p.waitFor() != 0) throw new Exception("aad-auth-mint failed");
        fetched++;
        if (first == null) {
            first = token;
            String payload = new String(java.util.Base64.getUrlDecoder().decode(token.split("\\.")[1]), StandardCharsets.UTF_8);
            java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"exp\":(\\d+)").matcher(payload);
            if (m.find()) firstExpiry = Long.parseLong(m.group(1));
        }
        return token;
    }
}
