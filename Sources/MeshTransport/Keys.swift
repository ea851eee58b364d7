import CSodium
import CZeroMQ

private let sodiumReady: Bool = sodium_init() >= 0

/// The mesh's one secret: 32 random bytes made by `mesh init`. Every CURVE key pair of the mesh is
/// derived from it, so holding it is what makes a host (or a laptop) part of the mesh.
public struct ClusterSecret: Sendable, Equatable {
    public static let byteCount = 32
    /// The prefix of the secret's text form, so a pasted key is recognisable and versioned.
    public static let textPrefix = "meshkey1."

    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws(KeyError) {
        guard bytes.count == Self.byteCount else { throw .wrongLength(bytes.count) }
        self.bytes = bytes
    }

    /// 32 bytes from the operating system's CSPRNG.
    public static func generate() -> ClusterSecret {
        precondition(sodiumReady, "libsodium failed to initialise")
        var b = [UInt8](repeating: 0, count: byteCount)
        randombytes_buf(&b, byteCount)
        return try! ClusterSecret(bytes: b)
    }

    /// `meshkey1.` followed by the bytes in unpadded URL-safe base64: safe in a shell, a URL, a token.
    public var text: String { Self.textPrefix + Base64URL.encode(bytes) }

    /// Parses the text form; surrounding whitespace is ignored.
    public init(text: String) throws(KeyError) {
        let t = text.trimmingASCIIWhitespace()
        guard t.hasPrefix(Self.textPrefix) else { throw .notAKey }
        guard let b = Base64URL.decode(String(t.dropFirst(Self.textPrefix.count))) else { throw .notAKey }
        try self.init(bytes: b)
    }

    /// The key pairs of the mesh, derived with libsodium's KDF (BLAKE2b) under a fixed context.
    public var keys: MeshKeys {
        MeshKeys(
            server: derive(.server),
            peer: derive(.peer),
            client: derive(.client)
        )
    }

    private func derive(_ role: KeyRole) -> CurveKeyPair {
        precondition(sodiumReady, "libsodium failed to initialise")
        var secret = [UInt8](repeating: 0, count: 32)
        let context: [CChar] = Array("meshcrv1".utf8CString)
        _ = crypto_kdf_derive_from_key(&secret, 32, role.subkeyID, context, bytes)
        return CurveKeyPair(secretKey: secret)
    }
}

/// What a key pair is for. The ZAP handler lets in `peer` and `client` keys and tells the agent
/// which of the two a connection used.
public enum KeyRole: String, Sendable, CaseIterable {
    /// Every agent's listening socket (one server key for the whole mesh).
    case server
    /// Agents connecting to each other.
    case peer
    /// The CLI and other tools connecting to an agent.
    case client

    var subkeyID: UInt64 {
        switch self {
        case .server: 1
        case .peer: 2
        case .client: 3
        }
    }
}

/// A Curve25519 key pair for ZeroMQ's CURVE mechanism.
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: [UInt8]
    public let secretKey: [UInt8]

    /// Derives the public key from a 32-byte secret key.
    public init(secretKey: [UInt8]) {
        precondition(secretKey.count == 32)
        precondition(sodiumReady, "libsodium failed to initialise")
        var pub = [UInt8](repeating: 0, count: 32)
        _ = crypto_scalarmult_base(&pub, secretKey)
        self.publicKey = pub
        self.secretKey = secretKey
    }

    /// A fresh random key pair (tests use it for a client that is not the mesh's).
    public static func random() -> CurveKeyPair {
        precondition(sodiumReady, "libsodium failed to initialise")
        var s = [UInt8](repeating: 0, count: 32)
        randombytes_buf(&s, 32)
        return CurveKeyPair(secretKey: s)
    }

    /// The public key in Z85, as libzmq's tools print keys.
    public var publicZ85: String { Z85.encode(publicKey) }
}

/// The mesh's key pairs, derived from the `ClusterSecret`.
public struct MeshKeys: Sendable, Equatable {
    public let server: CurveKeyPair
    public let peer: CurveKeyPair
    public let client: CurveKeyPair

    public init(server: CurveKeyPair, peer: CurveKeyPair, client: CurveKeyPair) {
        self.server = server
        self.peer = peer
        self.client = client
    }

    public func pair(for role: KeyRole) -> CurveKeyPair {
        switch role {
        case .server: server
        case .peer: peer
        case .client: client
        }
    }

    /// A short public name of the mesh: the first 8 bytes of a BLAKE2b hash of the server's public
    /// key, in hex. Two hosts with the same fingerprint hold the same secret; the fingerprint reveals
    /// nothing of it.
    public var fingerprint: String { KeyFingerprint.of(server.publicKey) }
}

/// A short BLAKE2b checksum, to tell a damaged token from a wrong one.
public enum Checksum {
    public static func of(_ bytes: [UInt8], length: Int = 4) -> [UInt8] {
        precondition(sodiumReady, "libsodium failed to initialise")
        var out = [UInt8](repeating: 0, count: length)
        _ = crypto_generichash(&out, length, bytes, UInt64(bytes.count), nil, 0)
        return out
    }
}

public enum KeyFingerprint {
    /// 16 hex digits naming a public key in logs and errors without revealing anything secret.
    public static func of(_ publicKey: [UInt8]) -> String {
        precondition(sodiumReady, "libsodium failed to initialise")
        var out = [UInt8](repeating: 0, count: 8)
        _ = crypto_generichash(&out, 8, publicKey, UInt64(publicKey.count), nil, 0)
        return out.map { b in
            let s = String(b, radix: 16)
            return b < 16 ? "0" + s : s
        }.joined()
    }
}

/// Errors in reading a cluster key.
public enum KeyError: Error, Sendable, Equatable, CustomStringConvertible {
    case wrongLength(Int)
    case notAKey

    public var description: String {
        switch self {
        case .wrongLength(let n): "a cluster key is 32 bytes, this one is \(n)"
        case .notAKey: "not a mesh cluster key (expected text starting with \(ClusterSecret.textPrefix))"
        }
    }
}

public enum Base64URL {
    public static func encode(_ bytes: [UInt8]) -> String {
        let variant = Int32(sodium_base64_VARIANT_URLSAFE_NO_PADDING)
        let len = sodium_base64_encoded_len(bytes.count, variant)
        var out = [CChar](repeating: 0, count: len)
        _ = sodium_bin2base64(&out, len, bytes, bytes.count, variant)
        return String(nulTerminated: out)
    }

    public static func decode(_ text: String) -> [UInt8]? {
        let variant = Int32(sodium_base64_VARIANT_URLSAFE_NO_PADDING)
        let input = Array(text.utf8CString)
        var out = [UInt8](repeating: 0, count: text.utf8.count)
        var written = 0
        let rc = sodium_base642bin(&out, out.count, input, input.count - 1, nil, &written, nil, variant)
        guard rc == 0 else { return nil }
        return Array(out.prefix(written))
    }
}

enum Z85 {
    static func encode(_ bytes: [UInt8]) -> String {
        precondition(bytes.count % 4 == 0)
        var out = [CChar](repeating: 0, count: bytes.count * 5 / 4 + 1)
        _ = zmq_z85_encode(&out, bytes, bytes.count)
        return String(nulTerminated: out)
    }
}

extension String {
    func trimmingASCIIWhitespace() -> String {
        let ws: Set<Character> = [" ", "\n", "\t", "\r"]
        var s = Substring(self)
        while let f = s.first, ws.contains(f) { s.removeFirst() }
        while let l = s.last, ws.contains(l) { s.removeLast() }
        return String(s)
    }
}

extension String {
    /// The text of a C buffer up to its first NUL.
    init(nulTerminated buffer: [CChar]) {
        self.init(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
