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
