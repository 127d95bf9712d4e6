// Offline checks of rendered Kubernetes YAML (scripts/check-k8s), three layers:
//   schema  every object against its Kubernetes (or Prometheus Operator) schema: types,
//           required fields, enums (kubernetes-models);
//   strict  unknown fields, which the schemas allow: each object as a typed TypeScript literal
//           (kubernetes-types), so tsc's excess-property check names a misspelt key;
//   policy  what every Tally workload must have: probes (Deployments), requests and a memory
//           limit, the restricted security context, a pinned image, no service-account token.
// Usage: node k8s.mjs FILE...   (exit 1 naming each problem)
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join, dirname } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const here = dirname(fileURLToPath(import.meta.url));
let bad = 0;
const fail = (msg) => { bad++; console.error(`FAIL ${msg}`); };
const docs = [];
for (const file of process.argv.slice(2))
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length) { fail(`${file}: ${doc.errors[0].message}`); continue; }
    const obj = doc.toJS();
    if (obj) docs.push({ file, obj, id: `${file}: ${obj.kind}/${obj.metadata?.name}` });
  }

// ---- schema ----------------------------------------------------------------------------------
for (const { obj, id } of docs) {
  const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["", obj.apiVersion];
  const pkg = group === "monitoring.coreos.com" ? "@kubernetes-models/prometheus-operator/" : "kubernetes-models/";
  const mod = await import(pkg + (group ? group + "/" : "") + version).catch(() => ({}));
  const Model = mod[obj.kind];
  if (!Model) { fail(`${id}: no schema for ${obj.apiVersion} ${obj.kind}`); continue; }
  // kustomize folds long base64 values over lines, which the API server's decoder skips and
  // the schema's "byte" format does not: check them unfolded.
  const checked = obj.kind === "Secret" && obj.data
    ? { ...obj, data: Object.fromEntries(Object.entries(obj.data).map(([k, v]) => [k, String(v).replace(/\s/g, "")])) }
    : obj;
  try { new Model(checked).validate(); } catch (e) { fail(`${id}: ${e.message}`); }
}

// ---- strict: unknown fields ----------------------------------------------------------------
const grp = (g) => g.replace(/\.k8s\.io$/, "").replace("rbac.authorization", "rbac");
let ts = "", n = 0;
for (const { obj, id } of docs) {
  if (obj.apiVersion.includes(".coreos.com")) continue; // no kubernetes-types for CRDs
  const [g, v] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["core", obj.apiVersion];
  ts += `// ${id}\nexport const d${n++}: import("kubernetes-types/${grp(g)}/${v}").${obj.kind} = ${JSON.stringify(obj, null, 1)};\n`;
}
const dir = mkdtempSync(join(tmpdir(), "k8s-check-"));
writeFileSync(join(dir, "manifests.ts"), ts);
writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({
  compilerOptions: { strict: true, noEmit: true, skipLibCheck: true, module: "nodenext",
                     types: [],
                     paths: { "kubernetes-types/*": [join(here, "node_modules/kubernetes-types/*")] } },
  files: ["manifests.ts"] }));
try {
  execFileSync(join(here, "node_modules/.bin/tsc"), ["-p", join(dir, "tsconfig.json")], { stdio: "pipe" });
} catch (e) {
  fail(`unknown or mistyped fields (tsc over ${join(dir, "manifests.ts")}):\n${e.stdout}${e.stderr}`);
}

// ---- policy ----------------------------------------------------------------------------------
const workloads = { Deployment: true, StatefulSet: true, Job: true, CronJob: true };
for (const { obj, id } of docs) {
  if (!workloads[obj.kind]) continue;
  const pod = obj.kind === "CronJob" ? obj.spec.jobTemplate.spec.template.spec : obj.spec.template.spec;
  const psc = pod.securityContext ?? {};
  if (pod.automountServiceAccountToken !== false) fail(`${id}: automountServiceAccountToken must be false`);
  if (psc.runAsNonRoot !== true) fail(`${id}: pod securityContext.runAsNonRoot must be true`);
  if (!(psc.runAsUser > 0)) fail(`${id}: pod securityContext.runAsUser must be a non-zero uid`);
  if (psc.seccompProfile?.type !== "RuntimeDefault") fail(`${id}: seccompProfile must be RuntimeDefault`);
  for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
    const cid = `${id} container ${c.name}`;
    const sc = c.securityContext ?? {};
    if (sc.allowPrivilegeEscalation !== false) fail(`${cid}: allowPrivilegeEscalation must be false`);
    if (sc.readOnlyRootFilesystem !== true) fail(`${cid}: readOnlyRootFilesystem must be true`);
    if (JSON.stringify(sc.capabilities?.drop) !== '["ALL"]' || sc.capabilities?.add?.length)
      fail(`${cid}: capabilities must drop ALL and add nothing`);
    if (sc.privileged) fail(`${cid}: privileged`);
    const tag = /^[^@]+:([^:/@]+)$/.exec(c.image ?? "")?.[1];
    if (!(c.image ?? "").includes("@sha256:") && (!tag || tag === "latest"))
      fail(`${cid}: image ${c.image} is not pinned by a tag (not latest) or a digest`);
    if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory || !c.resources?.limits?.memory)
      fail(`${cid}: needs cpu and memory requests and a memory limit`);
    if (obj.kind !== "Job" && obj.kind !== "CronJob")
      for (const p of ["startupProbe", "livenessProbe", "readinessProbe"])
        if (!c[p]) fail(`${cid}: no ${p}`);
    for (const p of ["startupProbe", "livenessProbe", "readinessProbe"])
      if (c[p]?.grpc && typeof c[p].grpc.port !== "number") fail(`${cid}: ${p}.grpc.port must be a number`);
    // A Tally service listens where its ports say, never on its loopback default.
    if ((c.image ?? "").includes("tally/"))
      for (const [port, name] of [["grpc", "TALLY_GRPC_LISTEN"], ["http", "TALLY_HTTP_LISTEN"]]) {
        const p = (c.ports ?? []).find((x) => x.name === port);
        if (!p) continue;
        const v = (c.env ?? []).find((e) => e.name === name)?.value ?? "";
        const [host, num] = [v.slice(0, v.lastIndexOf(":")), Number(v.slice(v.lastIndexOf(":") + 1))];
        if (!v || host.startsWith("127.") || host === "localhost" || num !== p.containerPort)
          fail(`${cid}: ${name} must be 0.0.0.0:${p.containerPort} (the port ${port}), not "${v}" (the default binds 127.0.0.1)`);
      }
  }
  for (const t of pod.topologySpreadConstraints ?? []) {
    const sel = [...Object.keys(t.labelSelector?.matchLabels ?? {}), ...(t.labelSelector?.matchExpressions ?? []).map((e) => e.key)];
    for (const k of t.matchLabelKeys ?? [])
      if (sel.includes(k)) fail(`${id}: topologySpreadConstraints: ${k} is in both matchLabelKeys and labelSelector (refused by the API server)`);
  }
}
// ---- network policies: what each pod may receive and send -----------------------------------
const policies = docs.filter((d) => d.obj.kind === "NetworkPolicy").map((d) => d.obj);
const selects = (sel, labels) =>
  Object.entries(sel?.matchLabels ?? {}).every(([k, v]) => labels[k] === v) &&
  (sel?.matchExpressions ?? []).every((e) => e.operator === "Exists" ? e.key in labels
    : e.operator === "In" ? e.values.includes(labels[e.key]) : false);
// A peer in words: "pods tally.io/client=dashboard in any namespace", "namespace
// kubernetes.io/metadata.name=monitoring", "ip 10.10.0.0/24", "anyone".
const sel = (s) => {
  const parts = [...Object.entries(s?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`),
                 ...(s?.matchExpressions ?? []).map((e) => `${e.key} ${e.operator} ${(e.values ?? []).join("|")}`.trim())];
  return parts.length ? parts.sort().join(",") : "all";
};
const peer = (p) => {
  if (!p) return "anyone";
  if (p.ipBlock) return `ip ${p.ipBlock.cidr}${p.ipBlock.except ? " except " + p.ipBlock.except.join(",") : ""}`;
  const ns = p.namespaceSelector ? (sel(p.namespaceSelector) === "all" ? "any namespace" : `namespace ${sel(p.namespaceSelector)}`) : "this namespace";
  return p.podSelector ? `pods ${sel(p.podSelector)} in ${ns}` : ns;
};
if (policies.length) {
  const expect = JSON.parse(readFileSync(join(here, "netpol.json"), "utf8"));
  for (const obj of docs.map((d) => d.obj)) {
    if (!workloads[obj.kind]) continue;
    const labels = obj.spec.template.metadata.labels;
    const name = labels["app.kubernetes.io/name"], want = expect[name];
    if (!want) { fail(`NetworkPolicy: no expectation for pod ${name} (tools/k8s-check/netpol.json)`); continue; }
    for (const dir of ["ingress", "egress"]) {
      const type = dir === "ingress" ? "Ingress" : "Egress", side = dir === "ingress" ? "from" : "to";
      const mine = policies.filter((p) => (p.spec.policyTypes ?? ["Ingress"]).includes(type) && selects(p.spec.podSelector, labels));
      if (!mine.length) { fail(`NetworkPolicy: ${dir} of ${name} is not restricted at all`); continue; }
      const got = new Set();
      for (const p of mine)
        for (const r of p.spec[dir] ?? [])
          for (const who of r[side] ?? [null])
            for (const port of r.ports ?? [{ port: "any" }])
              got.add(`${port.protocol ?? "TCP"}/${port.port}${port.endPort ? "-" + port.endPort : ""} ${side} ${peer(who)}`);
      const exp = new Set(want[dir]);
      for (const g of got) if (!exp.has(g)) fail(`NetworkPolicy: ${name} may ${dir === "ingress" ? "receive" : "send"} ${g}, which netpol.json does not expect`);
      for (const e of exp) if (!got.has(e)) fail(`NetworkPolicy: ${name} may not ${dir === "ingress" ? "receive" : "send"} ${e}, which netpol.json expects`);
    }
  }
}

console.log(`k8s-check: ${docs.length} objects, ${bad ? bad + " problem(s)" : "all good"}`);
process.exit(bad ? 1 : 0);
