// Node-RED settings for `loadtest throughput --node-red`: the flow in `flows.json`, no
// editor, no HTTP-in nodes, warnings only. The harness passes the port, the user
// directory and the Navixy, WebSocket and webhook addresses (environment variables read
// by the flow).
module.exports = {
    flowFile: "flows.json",
    credentialSecret: false,
    httpAdminRoot: false,
    httpNodeRoot: false,
    logging: { console: { level: "warn", metrics: false, audit: false } },
    editorTheme: { projects: { enabled: false } },
};
