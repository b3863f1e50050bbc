// RFC 6962 (RFC 9162 §2.1.3.2) Merkle inclusion proofs, checked in the
// browser with WebCrypto, so a user need not trust the server's word:
//   leaf hash = SHA-256(0x00 || leaf), node hash = SHA-256(0x01 || left || right).

export function decodeHash(s) {
  if (s instanceof Uint8Array) return s;
  if (Array.isArray(s)) return new Uint8Array(s);
  s = String(s || "").trim();
  if (/^[0-9a-fA-F]*$/.test(s) && s.length % 2 === 0) {
    const out = new Uint8Array(s.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
    return out;
  }
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

export function hex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function sha256(...parts) {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const buf = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { buf.set(p, o); o += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
}

export const leafHash = (leaf) => sha256(Uint8Array.of(0), leaf);
export const nodeHash = (l, r) => sha256(Uint8Array.of(1), l, r);

// rootFromInclusionProof walks the audit path from the leaf up (RFC 9162
// §2.1.3.2) and returns the root it leads to; it throws when the path does
// not fit the index and size.
export async function rootFromInclusionProof(index, size, leafH, path) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn > sn || sn < 0n) throw new Error(`leaf index ${index} is outside a tree of ${size}`);
  let r = leafH;
  for (const p of path) {
    if (sn === 0n) throw new Error("the audit path is longer than the tree is deep");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("the audit path is shorter than the tree is deep");
  return r;
}

const pick = (o, ...names) => {
  for (const n of names) if (o[n] !== undefined && o[n] !== null) return o[n];
  return undefined;
};

// normalize reads the proof shapes a ledger may export into
// {index, size, leafHash, path, root}.
export async function normalize(proof) {
  const p = proof.proof && typeof proof.proof === "object" && !Array.isArray(proof.proof) ? { ...proof, ...proof.proof } : proof;
  const index = pick(p, "leaf_index", "index", "LeafIndex");
  const size = pick(p, "tree_size", "size", "TreeSize");
  const path = pick(p, "audit_path", "hashes", "path", "Hashes", "proof");
  const root = pick(p, "root_hash", "root", "RootHash");
  if (index === undefined || size === undefined || !Array.isArray(path) || root === undefined) {
    throw new Error("the proof needs leaf_index, tree_size, audit_path and root_hash");
  }
  let lh = pick(p, "leaf_hash", "LeafHash");
  if (lh !== undefined) lh = decodeHash(lh);
  else {
    const leaf = pick(p, "leaf", "leaf_data", "Leaf");
    if (leaf === undefined) throw new Error("the proof needs leaf_hash or leaf");
    lh = await leafHash(typeof leaf === "string" && !/^[0-9a-fA-F]*$/.test(leaf) ? new TextEncoder().encode(leaf) : decodeHash(leaf));
  }
  return { index, size, leafHash: lh, path: path.map(decodeHash), root: decodeHash(root) };
}

// verifyInclusion says whether a proof holds: {valid, reason, computed}.
export async function verifyInclusion(proof) {
  let n;
  try {
    n = await normalize(proof);
  } catch (e) {
    return { valid: false, reason: e.message };
  }
  let got;
  try {
    got = await rootFromInclusionProof(n.index, n.size, n.leafHash, n.path);
  } catch (e) {
    return { valid: false, reason: e.message };
  }
  const valid = got.length === n.root.length && got.every((b, i) => b === n.root[i]);
  return {
    valid,
    computed: hex(got),
    expected: hex(n.root),
    reason: valid
      ? `leaf ${n.index} of ${n.size} hashes up to the root ${hex(n.root).slice(0, 16)}…`
      : `the path leads to ${hex(got).slice(0, 16)}…, not the root ${hex(n.root).slice(0, 16)}…`,
  };
}

// ---------------------------------------------------------------------------
// Consistency proofs (RFC 9162 §2.1.4.2): the tree of size1 leaves is a
// prefix of the tree of size2 leaves.

export async function verifyConsistency(size1, size2, path, root1, root2) {
  let fn = BigInt(size1), sn = BigInt(size2);
  if (fn > sn) throw new Error(`consistency from ${size1} to the smaller ${size2}`);
  if (fn === sn) {
    if (path.length) throw new Error("a consistency proof between equal sizes must be empty");
    if (!same(root1, root2)) throw new Error("equal sizes with different roots");
    return;
  }
  if (fn === 0n) return; // the empty tree is a prefix of every tree
  if (!path.length) throw new Error("empty consistency proof");
  let p = path;
  if ((fn & (fn - 1n)) === 0n) p = [root1, ...path];
  fn -= 1n;
  sn -= 1n;
  while ((fn & 1n) === 1n) { fn >>= 1n; sn >>= 1n; }
  let fr = p[0], sr = p[0];
  for (const c of p.slice(1)) {
    if (sn === 0n) throw new Error("the consistency proof is too long");
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if ((fn & 1n) === 0n) while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("the consistency proof is too short");
  if (!same(fr, root1)) throw new Error("the proof does not lead to the older root");
  if (!same(sr, root2)) throw new Error("the proof does not lead to the newer root");
}

function same(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// ---------------------------------------------------------------------------
// Proof bundles exported by the ledger (internal/ledger/proofbundle): an event
// bundle proves a twin event is in the service's signed event tree, in an
// anchored batch, and (embedded ledger) in a signed block that wrote the
// anchor. The browser repeats every check of proofbundle.Verify.

// rawJSON parses JSON text and keeps, for every value, its exact text and
// its tokens in order, so that hashes over "the exact bytes" can be
// recomputed (canonical). get(path) returns {value, raw} for a path of keys.
export function rawJSON(text) {
  let i = 0;
  const ws = () => { while (i < text.length && " \t\r\n".includes(text[i])) i++; };
  function value() {
    ws();
    const start = i;
    const c = text[i];
    let v, kids = null;
    if (c === "{") {
      i++; kids = {}; v = {};
      const entries = [];
      Object.defineProperty(kids, "entries", { value: entries }); // keys in order: JS objects put integer-like keys first
      ws();
      if (text[i] === "}") i++;
      else for (;;) {
        ws();
        const k = JSON.parse(text.slice(i, (i = endOfString(i))));
        ws();
        if (text[i++] !== ":") throw new Error(`JSON: ':' expected at ${i}`);
        const node = value();
        kids[k] = node; v[k] = node.value;
        entries.push([k, node]);
        ws();
        if (text[i] === ",") { i++; continue; }
        if (text[i++] !== "}") throw new Error(`JSON: '}' expected at ${i}`);
        break;
      }
    } else if (c === "[") {
      i++; kids = []; v = [];
      ws();
      if (text[i] === "]") i++;
      else for (;;) {
        const node = value();
        kids.push(node); v.push(node.value);
        ws();
        if (text[i] === ",") { i++; continue; }
        if (text[i++] !== "]") throw new Error(`JSON: ']' expected at ${i}`);
        break;
      }
    } else if (c === '"') {
      i = endOfString(i);
      v = JSON.parse(text.slice(start, i));
    } else {
      const m = /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 400));
      if (!m) throw new Error(`JSON: unexpected ${JSON.stringify(text.slice(i, i + 10))} at ${i}`);
      i += m[0].length;
      v = JSON.parse(m[0]);
    }
    return { value: v, raw: text.slice(start, i), kids };
  }
  function endOfString(j) {
    if (text[j] !== '"') throw new Error(`JSON: string expected at ${j}`);
    j++;
    while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
    return j + 1;
  }
  const root = value();
  ws();
  if (i !== text.length) throw new Error(`JSON: trailing text at ${i}`);
  root.get = (...path) => {
    let n = root;
    for (const k of path) { n = n && n.kids ? n.kids[k] : undefined; }
    return n;
  };
  return root;
}

const enc = new TextEncoder();

// goString is JSON text for s as Go's encoding/json writes it:
// JSON.stringify's escapes, plus <, >, & and U+2028/U+2029 as \u escapes.
function goString(s) {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

// canonical is a node of rawJSON written as Go's encoding/json writes it
// (proofbundle.Canonical): no whitespace, strings escaped as Go escapes
// them, numbers as written, keys in their order. The service wrote the
// hashed and signed values this way, so a pretty-printed bundle (by jq, a
// browser or an editor) checks the same as the file it came from.
export function canonical(node) {
  if (Array.isArray(node.kids)) return "[" + node.kids.map(canonical).join(",") + "]";
  if (node.kids) return "{" + node.kids.entries.map(([k, n]) => goString(k) + ":" + canonical(n)).join(",") + "}";
  if (typeof node.value === "string") return goString(node.value);
  return node.raw.trim();
}

function b64(s) {
  const bin = atob(String(s || ""));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

// unixNanos reads an RFC 3339 time with up to nanosecond precision.
export function unixNanos(t) {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$/.exec(String(t));
  if (!m) throw new Error(`time ${t}: not RFC 3339`);
  const ms = Date.parse(m[1] + m[3]);
  if (isNaN(ms)) throw new Error(`time ${t}: not a date`);
  const frac = m[2] ? BigInt((m[2].slice(1) + "000000000").slice(0, 9)) : 0n;
  return BigInt(ms) * 1000000n + frac;
}

async function ed25519Verify(keyBytes, sig, data) {
  const key = await crypto.subtle.importKey("raw", keyBytes, { name: "Ed25519" }, false, ["verify"]);
  return crypto.subtle.verify({ name: "Ed25519" }, key, sig, data);
}

// anchorHash is core.AnchorHash: hex SHA-256 over the anchor's fields
// joined by NUL bytes, the chain name last for a named chain.
export async function anchorHash(a) {
  const parts = ["twinchain-anchor-v1", String(a.seq), a.root || "", String(a.first_event), String(a.last_event),
    String(unixNanos(a.first_time)), String(unixNanos(a.last_time)), String(a.size), String(a.tree_size || 0),
    a.tree_root || "", a.prev || ""];
  if (a.chain) parts.push(a.chain);
  return hex(await sha256(enc.encode(parts.join("\u0000"))));
}

async function writeSetHash(writes) {
  const chunks = [];
  const u64 = (n) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(n)); return b; };
  for (const w of writes || []) {
    const k = enc.encode(w.key);
    const v = w.value ? b64(w.value) : new Uint8Array(0);
    chunks.push(u64(k.length), k, Uint8Array.of(w.delete ? 1 : 0), u64(v.length), v);
  }
  return sha256(...chunks);
}

// anchorKey is core.AnchorKey: the world-state key of an anchor.
export function anchorKey(chain, seq) {
  const n = String(seq).padStart(20, "0");
  return chain ? `anchorc/${chain}/${n}` : `anchor/${n}`;
}

// checkBlock is fileledger.CheckBlock: the block's hash over its exact body
// bytes, its signature by the key (the service's, or the ledger node's),
// and its write-set hash.
async function checkBlock(blockNode, key) {
  const bodyRaw = canonical(blockNode.kids.body);
  const blk = blockNode.value;
  const h = await sha256(enc.encode("twinchain-block-v1\n"), enc.encode(bodyRaw));
  if (!same(h, decodeHash(blk.hash))) throw new Error("block hash does not match its body");
  if (!same(decodeHash(blk.key), key)) throw new Error(`block is signed by key ${blk.key}, not the expected key ${hex(key).slice(0, 16)}…`);
  if (!(await ed25519Verify(key, decodeHash(blk.sig), h))) throw new Error("block signature does not verify");
  const body = blk.body;
  if (!same(await writeSetHash(body.writes), decodeHash(body.writes_hash))) throw new Error("write set does not match its hash");
  return body;
}

function writeHolds(body, key, rawValue) {
  const want = enc.encode(rawValue);
  return (body.writes || []).some((w) => !w.delete && (key === "" || w.key === key) && same(b64(w.value), want));
}

// verifyBundle checks a proof bundle (its JSON text) the way
// proofbundle.VerifyKeys does. trustedKey (hex) is the service key to
// trust; without it the bundle's own key is used and the report says so.
// trustedLedgerKey (hex) is the same for a bundle whose ledger blocks
// another node's key signs (its ledger_key).
// It returns {valid, subject, checks: [{name, ok, detail}]}.
export async function verifyBundle(text, trustedKey, trustedLedgerKey) {
  const checks = [];
  const add = (name, err, detail) => checks.push({ name, ok: !err, detail: err ? err.message || String(err) : detail });
  let root;
  try { root = rawJSON(text); } catch (e) { add("parse", e); return { valid: false, subject: "proof bundle", checks }; }
  const b = root.value || {};
  if (b.event === undefined && b.record === undefined && b.leaf_index !== undefined) {
    // A bare RFC 6962 inclusion proof.
    const r = await verifyInclusion(b);
    add("tree inclusion", r.valid ? null : new Error(r.reason), r.reason);
    return { valid: r.valid, subject: "inclusion proof", checks };
  }
  let key;
  try {
    if (b.version !== 1) throw new Error(`bundle version ${b.version}, want 1`);
    key = decodeHash(trustedKey || b.service_key);
    if (key.length !== 32) throw new Error("service key: want 32 bytes of hex");
    if (trustedKey && b.service_key && !same(key, decodeHash(b.service_key))) throw new Error("the bundle names another service key than the trusted one");
    add("service key", null, trustedKey ? `trusted key ${hex(key).slice(0, 16)}…` : `the bundle's own key ${hex(key).slice(0, 16)}… (not pinned)`);
  } catch (e) {
    add("service key", e);
    return { valid: false, subject: "proof bundle", checks };
  }
  let blockKey = key;
  if (b.ledger_key && b.ledger_key !== b.service_key) {
    try {
      blockKey = decodeHash(trustedLedgerKey || b.ledger_key);
      if (blockKey.length !== 32) throw new Error("ledger key: want 32 bytes of hex");
      if (trustedLedgerKey && !same(blockKey, decodeHash(b.ledger_key))) throw new Error("the bundle names another ledger key than the trusted one");
      add("ledger key", null, trustedLedgerKey ? `trusted key ${hex(blockKey).slice(0, 16)}…` : `the bundle's own ledger key ${hex(blockKey).slice(0, 16)}… (not pinned)`);
    } catch (e) {
      add("ledger key", e);
      return { valid: false, subject: "proof bundle", checks };
    }
  }
  let subject = "proof bundle";
  if (b.kind === "event" && b.event) subject = await verifyEventProof(root.get("event"), key, add, blockKey);
  else if (b.kind === "record" && b.record) subject = await verifyRecordProof(root.get("record"), blockKey, add);
  else add("kind", new Error(`kind ${b.kind} without its proof`));
  return { valid: checks.length > 0 && checks.every((c) => c.ok), subject, checks };
}

async function step(add, name, f) {
  try {
    const detail = await f();
    add(name, null, detail);
    return true;
  } catch (e) {
    add(name, e);
    return false;
  }
}

async function verifyEventProof(node, key, add, blockKey) {
  const p = node.value;
  let subject = `twin event ${p.event_id}`;
  const leaf = b64(p.leaf);
  const lh = await leafHash(leaf);
  await step(add, "event record", async () => {
    const ev = JSON.parse(new TextDecoder().decode(leaf));
    if (ev.id !== p.event_id || p.leaf_index !== p.event_id - 1) throw new Error(`leaf is event ${ev.id} at index ${p.leaf_index}, bundle says event ${p.event_id}`);
    subject = `twin event ${ev.id}: ${ev.asset} ${ev.type} revision ${ev.revision} at ${ev.time}`;
    return `leaf hash ${hex(lh).slice(0, 16)}…`;
  });
  const cp = p.checkpoint || {};
  await step(add, "checkpoint signature", async () => {
    if (!same(decodeHash(cp.key), key)) throw new Error("checkpoint is signed by another key");
    const textToSign = `twinchain-checkpoint-v1\n${cp.origin}\n${cp.size}\n${cp.root}\n${unixNanos(cp.time)}\n`;
    if (!(await ed25519Verify(key, decodeHash(cp.sig), enc.encode(textToSign)))) throw new Error("checkpoint signature does not verify");
    return `tree size ${cp.size} root ${String(cp.root).slice(0, 16)}… at ${cp.time}`;
  });
  await step(add, "tree inclusion", async () => {
    const got = await rootFromInclusionProof(p.leaf_index, cp.size, lh, (p.inclusion || []).map(decodeHash));
    if (!same(got, decodeHash(cp.root))) throw new Error(`the path leads to ${hex(got).slice(0, 16)}…, not the checkpoint root`);
    return `leaf ${p.leaf_index} of ${cp.size}, ${(p.inclusion || []).length} proof hashes`;
  });
  const anchorNode = node.kids.anchor;
  const a = anchorNode ? anchorNode.value : null;
  if (!a || typeof a !== "object") { add("anchor", new Error("no anchor record")); return subject; }
  await step(add, "anchor", async () => {
    const h = await anchorHash(a);
    if (h !== a.hash) throw new Error(`anchor ${a.seq}: hash ${a.hash} does not match its fields (${h})`);
    if (p.event_id < a.first_event || p.event_id > a.last_event) throw new Error(`anchor ${a.seq} covers events ${a.first_event}..${a.last_event}, not ${p.event_id}`);
    if (a.size !== a.last_event - a.first_event + 1 || p.batch_index !== p.event_id - a.first_event) throw new Error(`anchor ${a.seq}: size or batch index do not fit`);
    return `anchor ${a.seq}${a.chain ? " of chain " + a.chain : ""} covers events ${a.first_event}..${a.last_event}`;
  });
  await step(add, "batch inclusion", async () => {
    const got = await rootFromInclusionProof(p.batch_index, a.size, lh, (p.batch_inclusion || []).map(decodeHash));
    if (!same(got, decodeHash(a.root))) throw new Error("the batch path does not lead to the anchor's root");
    return `leaf ${p.batch_index} of the ${a.size}-event batch`;
  });
  await step(add, "anchor tree", async () => {
    if (!a.tree_size) throw new Error(`anchor ${a.seq} carries no tree size and root`);
    if (a.tree_size === cp.size) {
      if (a.tree_root !== cp.root) throw new Error("anchor tree root is not the checkpoint root");
      return "the anchor's tree is the checkpoint's tree";
    }
    await verifyConsistency(a.tree_size, cp.size, (p.anchor_consistency || []).map(decodeHash), decodeHash(a.tree_root), decodeHash(cp.root));
    return `tree of ${a.tree_size} at the anchor is a prefix of the checkpoint's ${cp.size}`;
  });
  if (!node.kids.block || p.block === null) {
    add("ledger block", null, fabricNote(p) || "none in the bundle (Fabric ledger): the anchor is checked by its hash chain only");
    return subject;
  }
  await step(add, "ledger block", async () => {
    const body = await checkBlock(node.kids.block, blockKey);
    if (!writeHolds(body, anchorKey(a.chain, a.seq), canonical(anchorNode))) throw new Error(`block ${body.height} does not write this anchor`);
    return `block ${body.height} signed by the ${same(blockKey, key) ? "service" : "ledger"} key writes anchor ${a.seq}${a.chain ? " of chain " + a.chain : ""}`;
  });
  return subject;
}

async function verifyRecordProof(node, key, add) {
  const p = node.value;
  await step(add, "record", async () => {
    if (!p.key || !p.id || !p.key.endsWith("/" + p.id)) throw new Error(`key ${p.key} is not the key of ${p.type} ${p.id}`);
    return p.key;
  });
  if (!node.kids.block && p.fabric) {
    add("ledger block", null, fabricNote(p));
    return `ledger ${p.type} ${p.id}`;
  }
  await step(add, "ledger block", async () => {
    const body = await checkBlock(node.kids.block, key);
    if (!writeHolds(body, p.key, canonical(node.kids.value))) throw new Error(`block ${body.height} does not write this value at ${p.key}`);
    return `block ${body.height} signed by the service key writes it`;
  });
  return `ledger ${p.type} ${p.id}`;
}

// fabricNote shows a Fabric proof's transaction, block and channel; the
// block, its endorsements and the org CAs of the channel config (protobuf)
// are checked offline by `twin-service verify`, not in the browser.
function fabricNote(p) {
  const f = p.fabric;
  if (!f) return "";
  const what = [p.fabric_block ? "block" : "", p.fabric_config ? "channel config (org CAs)" : ""].filter(Boolean).join(" and ");
  return `Fabric transaction ${f.tx_id}, block ${f.block} of channel ${f.channel}` +
    (what ? `; the bundle carries the ${what}: run twin-service verify to check the block, its endorsements and the org CAs offline` : "");
}
