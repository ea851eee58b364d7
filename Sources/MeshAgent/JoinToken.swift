import MeshTransport

/// What `mesh init` prints and `mesh join` takes: the cluster secret and the addresses of agents
/// to join through, in one copy-pasteable word. It holds the secret: whoever has it can join.
///
/// Format: `mesh1-` + unpadded URL-safe base64 of secret (32 bytes) ‖ checksum (4 bytes of
/// BLAKE2b over the rest) ‖ seeds (UTF-8, comma-separated `HOST:PORT`).
public struct JoinToken: Sendable, Equatable {
    public static let prefix = "mesh1-"

    public var secret: ClusterSecret
    public var seeds: [AgentAddress]

    public init(secret: ClusterSecret, seeds: [AgentAddress]) {
        self.secret = secret
        self.seeds = seeds
    }

    public var text: String {
        let seedBytes = Array(seeds.map(\.description).joined(separator: ",").utf8)
        let sum = Checksum.of(secret.bytes + seedBytes)
        return Self.prefix + Base64URL.encode(secret.bytes + sum + seedBytes)
    }

    public init(text: String) throws(TokenError) {
        let t = text.trimmingCharacters(in: [" ", "\n", "\t", "\r"])
        guard t.hasPrefix(Self.prefix) else {
            throw t.hasPrefix("meshkey1.") ? .isAKey : .malformed("a join token starts with \(Self.prefix)")
        }
        guard let bytes = Base64URL.decode(String(t.dropFirst(Self.prefix.count))), bytes.count > 36 else {
            throw .malformed("it is cut short or has characters that do not belong in it")
        }
        let secretBytes = Array(bytes[0..<32]), sum = Array(bytes[32..<36]), seedBytes = Array(bytes[36...])
        guard Checksum.of(secretBytes + seedBytes) == sum else {
            throw .malformed("its checksum does not match (a character was changed or lost in copying)")
        }
        guard let seedText = String(validating: seedBytes, as: UTF8.self) else { throw .malformed("its seed list is not text") }
        var seeds: [AgentAddress] = []
        for s in seedText.split(separator: ",") {
            guard let a = try? AgentAddress(parsing: String(s)), case .tcp = a else { throw .malformed("'\(s)' is not a HOST:PORT") }
            seeds.append(a)
        }
        guard !seeds.isEmpty else { throw .malformed("it names no agent to join through") }
        secret = try! ClusterSecret(bytes: secretBytes)
        self.seeds = seeds
    }
}

public enum TokenError: UserFacingError, Equatable {
    case malformed(String)
    case isAKey

    public var exitCode: Int32 { ExitStatus.usage }

    public var description: String {
        switch self {
        case .malformed(let why): "not a valid join token: \(why). Print the token again on a member with `mesh token`"
        case .isAKey: "that is a cluster key, not a join token; print the join token on a member with `mesh token`"
        }
    }
}
