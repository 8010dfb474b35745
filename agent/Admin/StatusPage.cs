namespace NodeMesh.Admin;

/// <summary>
/// The page at <c>/</c> of the admin port, for people: this node, its workloads with their capture and
/// certificate state, certificate expiries, policies, and recent flows and denials. It renders what the admin
/// API returns (so the page and the API cannot disagree) and refreshes every few seconds.
/// </summary>
internal static class StatusPage
{
    public const string Html = """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <title>NodeMesh agent</title>
        <style>
          body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
          h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
          table { border-collapse: collapse; min-width: 40em; }
          th, td { text-align: left; padding: .25em .8em .25em 0; border-bottom: 1px solid #ddd; vertical-align: top; }
          .bad { color: #b00; font-weight: 600; } .ok { color: #070; }
          #error { color: #b00; }
        </style>
        </head>
        <body>
        <h1>NodeMesh agent <span id="node"></span></h1>
        <p id="summary"></p>
        <p id="error"></p>
        <h2>Workloads</h2>
        <table id="workloads"><thead><tr><th>name</th><th>ip</th><th>identity</th><th>mode</th><th>source</th><th>capture</th><th>certificate</th></tr></thead><tbody></tbody></table>
        <h2>Certificates</h2>
        <table id="certificates"><thead><tr><th>identity</th><th>state</th><th>expires</th><th>issuer</th><th>serial</th></tr></thead><tbody></tbody></table>
        <h2>Policies</h2>
        <table id="policies"><thead><tr><th>name</th><th>action</th><th>applies to</th><th>rules</th></tr></thead><tbody></tbody></table>
        <h2>Recent denials</h2>
        <table id="denials"><thead><tr><th>ended</th><th>source</th><th>identity</th><th>destination</th><th>why</th></tr></thead><tbody></tbody></table>
        <h2>Recent flows</h2>
        <table id="flows"><thead><tr><th>ended</th><th>direction</th><th>path</th><th>source</th><th>destination</th><th>sent</th><th>received</th><th>result</th></tr></thead><tbody></tbody></table>
        <script>
        "use strict";
        function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text ?? ""; if (cls) td.className = cls; return td; }
        function fill(id, items, columns) {
          const body = document.querySelector("#" + id + " tbody");
          body.replaceChildren();
          for (const item of items) { const row = body.insertRow(); row.dataset.key = columns.key(item); columns.cells(row, item); }
        }
        async function get(path) { const r = await fetch(path, { cache: "no-store" }); if (!r.ok) throw new Error(path + ": " + r.status); return r.json(); }
        async function refresh() {
          try {
            const [status, workloads, certificates, policies, flows] = await Promise.all(
              ["/status", "/workloads", "/certificates", "/policies", "/flows"].map(get));
            document.getElementById("node").textContent = status.node;
            document.getElementById("summary").textContent =
              `nodemesh ${status.version}; transports ${status.transports.join(", ")}; tunnel connections ${status.tunnelConnections}; ` +
              `flows ${status.activeFlows} active, ${status.flowsRefused} refused, ${status.flowsDenied} denied; ` +
              `${(status.residentBytes / 1048576).toFixed(1)} MiB resident`;
            fill("workloads", workloads, { key: w => w.name, cells: (row, w) => {
              cell(row, w.name); cell(row, w.ip); cell(row, w.identity); cell(row, w.mode); cell(row, w.source);
              cell(row, "captured", "ok"); cell(row, w.certificate, w.certificate.startsWith("valid") ? "ok" : "bad"); } });
            fill("certificates", certificates, { key: c => c.identity, cells: (row, c) => {
              cell(row, c.identity); cell(row, c.state, c.state === "valid" ? "ok" : "bad");
              cell(row, c.notAfter ?? c.error); cell(row, c.issuer); cell(row, c.serial); } });
            fill("policies", policies, { key: p => p.name, cells: (row, p) => {
              cell(row, p.name); cell(row, p.action + (p.dryRun ? " (dry run)" : "")); cell(row, p.selector); cell(row, p.rules); } });
            const recent = flows.slice(-200).reverse();
            fill("denials", recent.filter(f => f.outcome === "Denied" || f.outcome === "ClosedByPolicy"), { key: f => f.ended + f.source, cells: (row, f) => {
              cell(row, f.ended); cell(row, f.source); cell(row, f.sourceIdentity); cell(row, f.destination); cell(row, f.result, "bad"); } });
            fill("flows", recent.slice(0, 50), { key: f => f.ended + f.source, cells: (row, f) => {
              cell(row, f.ended); cell(row, f.direction); cell(row, f.path); cell(row, f.source); cell(row, f.destination);
              cell(row, f.bytesSent); cell(row, f.bytesReceived); cell(row, f.result, f.outcome === "Ok" ? "ok" : "bad"); } });
            document.getElementById("error").textContent = "";
            document.body.dataset.rendered = "yes";
          } catch (e) {
            document.getElementById("error").textContent = "cannot reach the agent's API: " + e.message;
          }
        }
        refresh();
        setInterval(refresh, 5000);
        </script>
        </body>
        </html>
        """;
}
