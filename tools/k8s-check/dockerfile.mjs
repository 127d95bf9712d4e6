// Offline checks of deploy/Dockerfile (scripts/check-k8s): it parses (dockerfile-ast); every
// base image is pinned (a tag that is not latest, or a digest); no ADD of a URL; each service
// stage runs as a numeric non-root user; and every shared library the built binaries need
// (readelf NEEDED, found through dpkg) comes from a package the runtime stage installs.
// Usage: node dockerfile.mjs DOCKERFILE BIN_DIR
import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
const { DockerfileParser } = createRequire(import.meta.url)("dockerfile-ast");

const [file, binDir] = process.argv.slice(2);
const df = DockerfileParser.parse(readFileSync(file, "utf8"));
let bad = 0;
const fail = (msg) => { bad++; console.error(`FAIL ${file}: ${msg}`); };
const services = { "command-svc": ["command-svc", "tally"], projector: ["projector", "tally"], "query-svc": ["query-svc"] };

// Stages in order, with their base, user and installed packages (inherited from a stage base).
const stages = {};
let cur = null;
for (const ins of df.getInstructions()) {
  const kw = ins.getKeyword(), args = ins.getArguments().map((a) => a.getValue());
  if (kw === "FROM") {
    const from = df.getFROMs().find((f) => f.getRange().start.line === ins.getRange().start.line);
    const image = from.getImageName(), parent = stages[image];
    cur = { name: from.getBuildStage() ?? "", user: parent?.user ?? null, pkgs: new Set(parent?.pkgs ?? []) };
    if (!parent) {
      const tag = from.getImageTag(), digest = from.getImageDigest();
      if (!digest && (!tag || tag === "latest")) fail(`FROM ${args[0]}: pin the base image by a tag (not latest) or a digest`);
    }
    stages[cur.name] = cur;
  } else if (kw === "ADD" && args.some((a) => /^[a-z]+:\/\//i.test(a))) {
    fail(`ADD of a URL (${args.join(" ")}): fetch in a RUN with a checksum, or COPY`);
  } else if (kw === "USER") {
    cur.user = args[0];
  } else if (kw === "RUN" && cur) {
    const text = args.join(" ");
    const m = /apt-get install\s+((?:-\S+\s+)*)([^&;|]+)/.exec(text.replace(/\\\s*\n/g, " "));
    if (m) for (const p of m[2].trim().split(/\s+/)) if (!p.startsWith("-")) cur.pkgs.add(p);
  }
}
for (const [svc, bins] of Object.entries(services)) {
  const st = stages[svc];
  if (!st) { fail(`no stage ${svc}`); continue; }
  if (!/^[1-9][0-9]*(:[0-9]+)?$/.test(st.user ?? "")) fail(`stage ${svc} runs as ${st.user ?? "root"}, not a numeric non-root user`);
  for (const bin of bins) {
    const dyn = execFileSync("readelf", ["-d", `${binDir}/${bin}`], { encoding: "utf8" });
    for (const [, lib] of dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)) {
      let pkg = null;
      for (const dir of ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"]) {
        try { pkg = execFileSync("dpkg", ["-S", `${dir}/${lib}`], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).split(":")[0]; break; } catch {}
      }
      if (!pkg) fail(`${bin} needs ${lib}, which no installed package owns`);
      else if (pkg !== "libc6" && !st.pkgs.has(pkg)) fail(`${bin} needs ${lib} (package ${pkg}), which stage ${svc} does not install`);
    }
  }
}
console.log(`dockerfile-check: ${Object.keys(stages).length} stages, ${bad ? bad + " problem(s)" : "all good"}`);
process.exit(bad ? 1 : 0);
