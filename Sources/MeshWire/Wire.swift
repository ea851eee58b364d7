import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Encoding and decoding of the messages agents and clients exchange (`Protos/mesh_wire.proto`).
///
/// Every message is one `WireEnvelope` carrying the sender's protocol version. `decode` checks the
/// version before anything else looks at the body, so a peer from an incompatible release gets a
/// clear `WireError.incompatibleVersion` rather than a misread message.
public enum Wire {
    /// The protocol this build speaks: the protocol's major version. It changes when nodes of
    /// two releases could no longer work together, above all when the replicated state machine
    /// changes (a new command in the log, a command applied differently: a node of the old release
    /// would refuse the entry or reach another state). 2: drains, requeues, quarantine, canaries
    /// (mesh 0.2). 3: settings checked when applied, a cordon that takes over a quarantine or a
    /// drain, one canary a node, a quarantine's log index (mesh 0.3). 4: every entry checked
    /// against the bounds of `Limits` when applied (an entry a 0.3 node applies is refused), Raft
    /// messages with impossible terms dropped, results capped (mesh 0.4). Fields and messages that
    /// old nodes may ignore keep it.
    public static let protocolVersion: UInt32 = testVersion ?? 4
    /// The oldest protocol this build still understands.
    public static let oldestSupportedVersion: UInt32 = testVersion ?? 4

    /// `MESH_TEST_PROTOCOL_VERSION=N` makes a process speak only protocol N: the tests use it to
    /// play an agent of another release. Nothing else reads it.
    private static let testVersion: UInt32? = getenv("MESH_TEST_PROTOCOL_VERSION").flatMap { UInt32(String(cString: $0)) }
    /// Envelopes larger than this are refused before parsing.
    public static let maxEnvelopeSize = 16 << 20

    public static func isSupported(_ version: UInt32) -> Bool {
        (oldestSupportedVersion...protocolVersion).contains(version)
    }

    /// An envelope of this build's version around `body`.
    public static func envelope(_ body: WireEnvelope.OneOf_Body, requestID: UInt64 = 0) -> WireEnvelope {
        var e = WireEnvelope()
        e.protocolVersion = protocolVersion
        e.requestID = requestID
        e.body = body
        return e
    }

    public static func encode(_ envelope: WireEnvelope) -> [UInt8] {
        // Encoding a message built in memory cannot fail: it has no required fields and no Any.
        try! envelope.serializedBytes()
    }

    /// The envelope encoded, or, if that would pass the frame limit (which the receiver would
    /// refuse, dropping its connection), an error reply with the same request id that says so.
    public static func encodeReply(_ envelope: WireEnvelope) -> [UInt8] {
        let bytes = encode(envelope)
        guard bytes.count > maxEnvelopeSize else { return bytes }
        return encode(error(.internal, "the answer is \(bytes.count >> 20) MiB, over the \(maxEnvelopeSize >> 20) MiB limit of one message: ask for less", requestID: envelope.requestID))
    }

    public static func encode(_ body: WireEnvelope.OneOf_Body, requestID: UInt64 = 0) -> [UInt8] {
        encode(envelope(body, requestID: requestID))
    }

    /// Parses an envelope and checks its version.
    public static func decode(_ bytes: [UInt8]) throws(WireError) -> WireEnvelope {
        guard bytes.count <= maxEnvelopeSize else { throw .tooLarge(bytes.count) }
        let e: WireEnvelope
        do {
            e = try WireEnvelope(serializedBytes: bytes)
        } catch {
            throw .malformed("\(error)")
        }
        guard e.protocolVersion != 0 else { throw .malformed("no protocol version") }
        guard isSupported(e.protocolVersion) else { throw .incompatibleVersion(peer: e.protocolVersion, requestID: e.requestID) }
        guard e.body != nil else { throw .malformed("empty message") }
        return e
    }

    /// The error in a reply from an agent of another protocol version: the envelope's layout is the
    /// same in every version, so its error message can still be shown.
    public static func errorOfAnyVersion(_ bytes: [UInt8]) -> WireErrorReply? {
        guard let e = try? WireEnvelope(serializedBytes: bytes), case .error(let err)? = e.body else { return nil }
        return err
    }

    /// The error reply for a message that could not be used.
    public static func errorReply(for error: WireError) -> WireEnvelope {
        var err = WireErrorReply()
        err.message = error.description
        switch error {
        case .malformed, .tooLarge: err.code = .malformed
        case .incompatibleVersion:
            err.code = .incompatibleVersion
            err.oldestSupportedVersion = oldestSupportedVersion
            err.newestSupportedVersion = protocolVersion
        }
        var requestID: UInt64 = 0
        if case .incompatibleVersion(_, let id) = error { requestID = id }
        return envelope(.error(err), requestID: requestID)
    }

    public static func error(_ code: WireErrorReply.Code, _ message: String, requestID: UInt64) -> WireEnvelope {
        var err = WireErrorReply()
        err.code = code
        err.message = message
        return envelope(.error(err), requestID: requestID)
    }
}

/// Why bytes from the network could not be used.
public enum WireError: Error, Sendable, Equatable, CustomStringConvertible {
    case malformed(String)
    case tooLarge(Int)
    case incompatibleVersion(peer: UInt32, requestID: UInt64)

    public var description: String {
        switch self {
        case .malformed(let why): "malformed message: \(why)"
        case .tooLarge(let n): "message of \(n) bytes is over the limit of \(Wire.maxEnvelopeSize)"
        case .incompatibleVersion(let v, _):
            "incompatible protocol version \(v): this agent speaks \(Wire.oldestSupportedVersion)–\(Wire.protocolVersion) (mesh \(MeshVersion.string)); run releases of one protocol version on every host (a rolling upgrade works within one; across two, upgrade every host together)"
        }
    }
}

/// The release of this build.
/// The mesh release. Nodes gossip it (`mesh status` shows each one's, and a mixed mesh during a
/// rolling upgrade); what decides whether two nodes work together is the protocol version
/// (`Wire.protocolVersion`, the protocol's major version: changes that add fields or messages keep
/// it, and an agent ignores what it does not know).
public enum MeshVersion {
    public static let release = "0.4.0"
    /// `MESH_TEST_VERSION=V` makes a process call itself release V: the rolling-upgrade test plays
    /// an old and a new release with one build. Nothing else reads it.
    public static let string = getenv("MESH_TEST_VERSION").map { String(cString: $0) } ?? release
}
