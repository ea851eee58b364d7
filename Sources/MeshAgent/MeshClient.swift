import Foundation
import MeshCore
import MeshTransport
import MeshWire

/// The CLI's way to an agent (DESIGN.md §3): over the local ipc socket, or over TCP from any
/// machine that holds the cluster key. Blocking; used from the CLI's main thread.
public final class MeshClient {
    public let address: AgentAddress
    private let connection: RequestClient
    private let fingerprint: String
    private var nextRequestID = UInt64.random(in: 1...(1 << 48))

    public init(address: AgentAddress, secret: ClusterSecret, settings: TransportSettings = .init()) throws(ClientError) {
        self.address = address
        let keys = secret.keys
        fingerprint = keys.fingerprint
        do {
            connection = try RequestClient(
                endpoint: address.endpoint, security: TransportSecurity.curve(keys).client(as: .client), settings: settings)
        } catch {
            throw .transport(address, "\(error)")
        }
    }

    public func close() { connection.close() }

    /// One round trip to the agent: who it is, and how long the trip took.
    public func ping(timeout: Duration = .seconds(3)) throws(ClientError) -> (node: WireNodeInfo, roundTrip: Duration) {
        try connect(timeout: timeout)
        let start = ContinuousClock.now
        let reply = try call(.ping(WirePing()), timeout: timeout)
        let elapsed = ContinuousClock.now - start
        guard case .pong(let pong) = reply.body else { throw .unexpectedReply(address) }
        return (pong.responder, elapsed)
    }

    /// Asks the agent to ping another agent over its own peer connection.
    public func pingPeer(_ target: AgentAddress, timeout: Duration = .seconds(3)) throws(ClientError) -> WirePingPeerResult {
        var request = WirePingPeer()
        request.endpoint = target.description
        request.timeoutMs = UInt32(clamping: Int(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000))
        // Our own wait covers the agent's, plus the trip to it.
        let reply = try call(.pingPeer(request), timeout: timeout + .seconds(2))
        guard case .pingPeerResult(let result) = reply.body else { throw .unexpectedReply(address) }
        return result
    }

    /// The mesh as the coordinator sees it (or, with `local`, as the agent asked sees it).
    public func status(local: Bool = false, timeout: Duration = .seconds(3)) throws(ClientError) -> WireStatusReply {
        var request = WireStatusRequest()
        request.local = local
        let reply = try call(.statusRequest(request), timeout: timeout)
        guard case .statusReply(let status) = reply.body else { throw .unexpectedReply(address) }
        return status
    }

    /// A change to the replicated state (cordon, uncordon, a setting): applied through the log and
    /// answered once committed. While there is no coordinator the agent holds the write, then
    /// answers "retry later"; this retries with the same (client, sequence) until `timeout`, so the
    /// change is applied once however many times it is sent.
    public func write(_ command: ClusterState.Command, timeout: Duration = .seconds(15)) throws(ClientError) -> (outcome: ClusterState.Outcome, index: UInt64) {
        let request = ClusterState.Request(client: .init(UInt64.random(in: 1 ... .max)), sequence: 1, command: command)
        var w = WireWriteRequest()
        w.request = Wire.wire(request)
        let deadline = ContinuousClock.now + timeout
        var retryLater: ClientError?
        while true {
            do throws(ClientError) {
                let reply = try call(.writeRequest(w), timeout: max(.milliseconds(100), deadline - .now))
                guard case .writeReply(let r) = reply.body else { throw ClientError.unexpectedReply(address) }
                return (Wire.outcome(r.outcome), r.index)
            } catch {
                if case .remote(_, .retryLater, _) = error {
                    retryLater = error
                    guard ContinuousClock.now + .seconds(1) < deadline else { throw error }
                    usleep(200_000)
                    continue
                }
                // Out of time while the agent was still holding the write: its last answer says why.
                if case .unreachable(_, .connectedButSilent) = error, let retryLater { throw retryLater }
                throw error
            }
        }
    }

    /// Asks the agent to leave the mesh gracefully and stop; returns how many members it told.
    /// (The agent answers after handing over coordination (≤ 2 s), having its vote removed
    /// (≤ 3 s) and a few gossip rounds: more than 5 s on a loaded machine.)
    public func leave(timeout: Duration = .seconds(20)) throws(ClientError) -> Int {
        let reply = try call(.leaveRequest(WireLeaveRequest()), timeout: timeout)
        guard case .leaveReply(let r) = reply.body else { throw .unexpectedReply(address) }
        return Int(r.told)
    }

    /// Completes the connection and its security handshake.
    public func connect(timeout: Duration) throws(ClientError) {
        do {
            try connection.waitConnected(timeout: timeout)
        } catch {
            throw map(error)
        }
    }

    /// Sends a request and returns the reply with the same request id; error replies are thrown.
    public func call(_ body: WireEnvelope.OneOf_Body, timeout: Duration) throws(ClientError) -> WireEnvelope {
        let deadline = ContinuousClock.now + timeout
        let id = nextRequestID
        nextRequestID += 1
        do {
            try connection.waitConnected(timeout: timeout)
            try connection.send([Wire.encode(body, requestID: id)])
            while true {
                let m = try connection.receive(timeout: deadline - .now)
                guard let frame = m.frames.last else { continue }
                let reply: WireEnvelope
                do {
                    reply = try Wire.decode(frame)
                } catch {
                    if case .incompatibleVersion = error, let e = Wire.errorOfAnyVersion(frame) {
                        throw ClientError.remote(address, e.code, e.message)
                    }
                    throw ClientError.badReply(address, error)
                }
                // Replies to earlier requests that timed out may still arrive; skip them.
                guard reply.requestID == id else { continue }
                if case .error(let e) = reply.body { throw ClientError.remote(address, e.code, e.message) }
                return reply
            }
        } catch let e as ClientError {
            throw e
        } catch let e as RequestError {
            throw map(e)
        } catch {
            throw .transport(address, "\(error)")
        }
    }

    private func map(_ e: RequestError) -> ClientError {
        switch e {
        case .timedOut(let d): .unreachable(address, d)
        case .handshakeFailed(let f): .keyRejected(address, f, fingerprint: fingerprint)
        case .transport(let t): .transport(address, "\(t)")
        }
    }
}

/// Why a command could not get what it asked of an agent.
public enum ClientError: UserFacingError, Equatable {
    case unreachable(AgentAddress, ConnectionDiagnosis)
    case keyRejected(AgentAddress, HandshakeFailure, fingerprint: String)
    case remote(AgentAddress, WireErrorReply.Code, String)
    case badReply(AgentAddress, WireError)
    case unexpectedReply(AgentAddress)
    case transport(AgentAddress, String)

    public var exitCode: Int32 {
        switch self {
        case .unreachable, .keyRejected: ExitStatus.unreachable
        case .remote(_, let code, _):
            switch code {
            case .unreachable, .handshakeFailed, .timeout, .incompatibleVersion: ExitStatus.unreachable
            case .badRequest: ExitStatus.usage
            case .retryLater: ExitStatus.retryLater
            default: ExitStatus.error
            }
        case .badReply, .unexpectedReply, .transport: ExitStatus.error
        }
    }

    public var description: String {
        switch self {
        case .unreachable(let a, let d):
            switch (a, d) {
            case (.ipc(let path), _):
                "no agent answers on \(path) (\(d)); is it running? Start one with `mesh agent`, or name one with --to HOST:PORT"
            case (_, .refused):
                "cannot reach an agent at \(a): connection refused; is `mesh agent` running there and listening on that port?"
            case (_, .noConnection):
                "cannot reach an agent at \(a): no connection could be made in time; check the host name and the network"
            case (_, .handshakeIncomplete):
                "\(a) accepted the connection but did not complete the security handshake in time; is it a mesh agent?"
            case (_, .connectedButSilent):
                "the agent at \(a) did not answer in time"
            }
        case .keyRejected(let a, .noDetail, let fp):
            "\(a) closed the connection during the security handshake: it is an agent of another mesh (this machine holds the key of mesh \(fp)), or not a mesh agent at all; use that mesh's cluster key (--key FILE)"
        case .keyRejected(let a, let f, let fp):
            "the agent at \(a) refused our cluster key (mesh \(fp)): \(f). This machine holds another mesh's key; use that mesh's cluster key (--key FILE)"
        case .remote(let a, _, let message):
            "\(a): \(message)"
        case .badReply(let a, let e):
            "\(a) sent a reply we cannot read: \(e)"
        case .unexpectedReply(let a):
            "\(a) sent an unexpected reply"
        case .transport(let a, let why):
            "cannot talk to \(a): \(why)"
        }
    }
}
