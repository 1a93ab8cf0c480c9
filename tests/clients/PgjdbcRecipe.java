// docs/clients.md, pgjdbc: opens a new connection per step, as a pool does when it grows, each
// with the plugin's fresh token; prints the same JSON report as tests/clients/harness.py.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

public class PgjdbcRecipe {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + System.getenv("AAD_HOST") + ":" + System.getenv("AAD_PORT") + "/" + System.getenv("AAD_DBNAME");
        int steps = Integer.parseInt(System.getenv().getOrDefault("AAD_STEPS", "8"));
        double interval = Double.parseDouble(System.getenv().getOrDefault("AAD_INTERVAL", "1.0"));
        Properties props = new Properties();
        props.setProperty("user", System.getenv("AAD_USER"));
        props.setProperty("authenticationPluginClassName", EntraTokenPlugin.class.getName());
        Map<Integer, Double> opened = new LinkedHashMap<>();
        List<String> errors = new ArrayList<>();
        for (int step = 1; step <= steps; step++) {
            List<Connection> held = new ArrayList<>();
            try {
                for (int i = 0; i < step; i++) held.add(DriverManager.getConnection(url, props));
                for (Connection c : held) {
                    try (ResultSet rs = c.createStatement().executeQuery("SELECT pg_backend_pid()")) {
                        rs.next();
                        opened.putIfAbsent(rs.getInt(1), System.currentTimeMillis() / 1000.0);
                    }
                }
            } catch (Exception e) {
                String text = (e.getClass().getSimpleName() + ": " + e.getMessage()).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", " ");
                errors.add(text.length() > 300 ? text.substring(0, 300) : text);
            } finally {
                for (Connection c : held) c.close();
            }
            Thread.sleep((long) (interval * 1000));
        }
        long after = opened.values().stream().filter(t -> EntraToken.firstExpiry >= 0 && t > EntraToken.firstExpiry + 0.5).count();
        StringBuilder errs = new StringBuilder();
        for (String e : errors) errs.append(errs.length() == 0 ? "" : ",").append('"').append(e).append('"');
        System.out.println("{\"connections\": " + opened.size() + ", \"tokens\": " + EntraToken.fetched
            + ", \"after_first_expiry\": " + after + ", \"errors\": [" + errs + "]}");
    }
}
