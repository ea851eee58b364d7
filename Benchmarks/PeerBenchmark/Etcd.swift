import Foundation
import MeshAgent

/// A 3-member etcd cluster on 127.0.0.1 (fixed ports: the namespace is the benchmark's own), with
/// the heartbeat and election timeout of mesh's consensus, and pre-vote as mesh has it.
final class Etcd: @unchecked Sendable {  // put and status are read-only; the harness changes members from one thread
    let root: String
    let count: Int
    let heartbeatMs: Int
    let electionMs: Int
    var members: [ChildProcess?]

    init(root: String, count: Int = 3, heartbeatMs: Int, electionMs: Int) {
        self.root = root
        self.count = count
        self.heartbeatMs = heartbeatMs
        self.electionMs = electionMs
        members = Array(repeating: nil, count: count)
    }

    func clientPort(_ i: Int) -> Int { 23790 + i }
    func peerPort(_ i: Int) -> Int { 23800 + i }

    var cluster: String { (0..<count).map { "e\($0)=http://127.0.0.1:\(peerPort($0))" }.joined(separator: ",") }

    func arguments(_ i: Int) -> [String] {
        [
            "--name", "e\(i)", "--data-dir", "\(root)/e\(i)",
            "--listen-client-urls", "http://127.0.0.1:\(clientPort(i))", "--advertise-client-urls", "http://127.0.0.1:\(clientPort(i))",
            "--listen-peer-urls", "http://127.0.0.1:\(peerPort(i))", "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPort(i))",
            "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "bench",
            "--heartbeat-interval", "\(heartbeatMs)", "--election-timeout", "\(electionMs)", "--pre-vote=true",
            "--logger", "zap", "--log-level", "warn",
        ]
    }

    /// The settings as given, for the report.
    var settings: String {
        "etcd \(count) members, --heartbeat-interval \(heartbeatMs) --election-timeout \(electionMs) --pre-vote=true, WAL fsync on (default), JSON gateway over HTTP on loopback"
    }

    func start(_ i: Int) throws {
        members[i] = try ChildProcess.spawn("/usr/bin/etcd", arguments(i), stdout: "\(root)/e\(i).log", stderr: "\(root)/e\(i).log")
    }

    func startAll() throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        for i in 0..<count { try start(i) }
        guard poll(every: .milliseconds(100), timeout: .seconds(60), { leader() != nil && (0..<count).allSatisfy { status($0) != nil } }) else {
            throw BenchError("etcd has no leader (logs in \(root))")
        }
    }

    /// (this member's id, the leader it knows) from /v3/maintenance/status.
    func status(_ i: Int, timeout: Duration = .milliseconds(500)) -> (member: String, leader: String)? {
        guard let r = httpPost(port: clientPort(i), path: "/v3/maintenance/status", body: "{}", timeout: timeout), r.status == 200,
              let obj = try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any],
              let header = obj["header"] as? [String: Any], let member = header["member_id"] as? String,
              let leader = obj["leader"] as? String, leader != "0" else { return nil }
        return (member, leader)
    }

    /// The index of the member that is leader, as the members see it.
    func leader() -> Int? {
        let s = (0..<count).map { status($0) }
        return (0..<count).first { i in s[i].map { me in s.contains { $0?.leader == me.member } } ?? false }
    }

    /// One write (a put) through member `i`; true once acknowledged.
    func put(_ i: Int, key: String, value: String, timeout: Duration) -> Bool {
        let body = #"{"key":"\#(Data(key.utf8).base64EncodedString())","value":"\#(Data(value.utf8).base64EncodedString())"}"#
        guard let r = httpPost(port: clientPort(i), path: "/v3/kv/put", body: body, timeout: timeout) else { return false }
        return r.status == 200 && r.body.contains("\"header\"") && !r.body.contains("\"error\"")
    }

    func stopAll() {
        for p in members { _ = p?.terminate(grace: .seconds(5)) }
    }
}
