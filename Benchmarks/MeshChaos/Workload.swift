import Foundation
import MeshCore
import MeshAgent

/// One `mesh submit`, as its client saw it.
struct Submit: Sendable {
    enum Outcome: String, Sendable {
        case invoked
        /// Exit 0: "submitted job N".
        case acknowledged
        /// Exit 1: the mesh refused it (nothing may run).
        case failed
        /// Anything else (unreachable, no coordinator in time, killed after the timeout): it may
        /// or may not have been committed.
        case unknown
    }

    var key: String
    var node: String
    var invokedAt: Double
    var endedAt: Double = 0
    var outcome: Outcome = .invoked
    var job: UInt64?
    var detail = ""
}

/// Clients that submit jobs continuously through random nodes, each job a witness script.
final class Workload: @unchecked Sendable {
    let mesh: ChaosMesh
    let profile: Profile
    let witness: String
    let log: Log
    let submits = Locked<[Submit]>([])
    private let stop = Locked(false)
    private var threads: [Thread] = []
    private let done = DispatchGroup()

    init(mesh: ChaosMesh, profile: Profile, log: Log) {
        self.mesh = mesh
        self.profile = profile
        self.log = log
        witness = mesh.work + "/witness"
    }

    /// The job: under `flock` it records its start (job id, attempt, node, time, and which of eight
    /// run slots it holds: slot k free means fewer than k runs of this job are alive), runs for
    /// its duration, and records its end. A run killed midway leaves a start without an end; the
    /// slot lock goes with the process, so the slot count is exact however runs end.
    /// With a third argument `hard`, the job ignores SIGTERM (and so does its `sleep`): only the
    /// supervisor's SIGKILL, `kill_grace_seconds` later, ends it.
    static func script(witness: String) -> String {
        """
        [ "$3" = hard ] && trap '' TERM
        f="\(witness)/$1"; exec 8>>"$f.lock"; slot=0
        for i in 1 2 3 4 5 6 7 8; do exec 9>>"$f.slot$i"; if \(Tools.flock) -n 9; then slot=$i; break; fi; exec 9>&-; done
        \(Tools.flock) 8; echo "start $MESH_JOB_ID $MESH_ATTEMPT $MESH_NODE $(date +%s%N) $slot" >>"$f"; \(Tools.flock) -u 8
        sleep "$2"
        \(Tools.flock) 8; echo "end $MESH_JOB_ID $MESH_ATTEMPT $MESH_NODE $(date +%s%N) $slot" >>"$f"; \(Tools.flock) -u 8
        """
    }

    func start(seed: UInt64) throws {
        try FileManager.default.createDirectory(atPath: witness, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: mesh.work + "/submits", withIntermediateDirectories: true)
        for c in 0..<profile.clients {
            done.enter()
            let t = Thread { [self] in
                clientLoop(c, rng: SeededRandom(seed: seed &+ UInt64(c + 1) &* 0x1234_5677))
                done.leave()
            }
            t.start()
            threads.append(t)
        }
    }

    func finish() {
        stop.with { $0 = true }
        done.wait()
    }

    private func clientLoop(_ c: Int, rng: SeededRandom) {
        var rng = rng
        var n = 0
        while !stop.get {
            n += 1
            // Some jobs ignore SIGTERM: fencing must wait for their SIGKILL too.
            submit(key: "c\(c)-\(n)", node: rng.pick(mesh.names), seconds: rng.uniform(profile.jobSeconds),
                   hard: rng.uniform(0...1) < profile.hardShare)
            sleep(seconds: rng.uniform(profile.pause))
        }
    }

    /// A job of `seconds` through `node`, recorded like every other submit.
    @discardableResult
    func submit(key: String, node: String, seconds: Double, hard: Bool = false, timeout: Duration = .seconds(20)) -> Submit {
        submit(key: key, node: node,
               command: ["sh", "-c", Self.script(witness: witness), "chaos", key, String(format: "%.2f", seconds), hard ? "hard" : "soft"],
               timeout: timeout)
    }

    private func submit(key: String, node: String, command: [String], timeout: Duration) -> Submit {
        var s = Submit(key: key, node: node, invokedAt: nowMillis())
        let index = submits.with { $0.append(s); return $0.count - 1 }
        let out = "\(mesh.work)/submits/\(key).out"
        let args = ["submit", "--to", mesh.address(node), "--key", mesh.keyFile, "--no-code", "--name", key, "--"] + command
        do {
            // The client's own files (`last`) go to the work directory, not the host's ~/.mesh.
            var env = ProcessInfo.processInfo.environment
            env["MESH_HOME"] = mesh.work + "/client"
            let p = try ChildProcess.spawn(mesh.meshBinary, args, environment: env, stdout: out, stderr: out)
            let status = p.wait(timeout: timeout) ?? p.terminate(grace: .seconds(1))
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            s.detail = text.trimmingCharacters(in: .whitespacesAndNewlines)
            switch status {
            case .exited(0):
                s.outcome = .acknowledged
                if let r = text.range(of: "submitted job ") {
                    s.job = UInt64(text[r.upperBound...].prefix { $0.isNumber })
                }
            case .exited(1): s.outcome = .failed
            default: s.outcome = .unknown
            }
            unlink(out)
        } catch {
            s.outcome = .unknown
            s.detail = "\(error)"
        }
        s.endedAt = nowMillis()
        submits.with { $0[index] = s }
        return s
    }
}

/// What the witness files say: every run of every job, independently of the mesh.
struct WitnessRun: Sendable {
    var key: String
    var job: UInt64
    var attempt: Int
    var node: String
    var start: Double
    var end: Double?
    var slot: Int
}

enum Witness {
    static func read(_ dir: String) -> [String: [WitnessRun]] {
        var out: [String: [WitnessRun]] = [:]
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        for key in files where !key.contains(".") {
            let text = (try? String(contentsOfFile: "\(dir)/\(key)", encoding: .utf8)) ?? ""
            var runs: [WitnessRun] = []
            for line in text.split(separator: "\n") {
                let f = line.split(separator: " ").map(String.init)
                guard f.count == 6, let job = UInt64(f[1]), let attempt = Int(f[2]), let ns = Double(f[4]), let slot = Int(f[5]) else { continue }
                let t = ns / 1_000_000
                if f[0] == "start" {
                    runs.append(WitnessRun(key: key, job: job, attempt: attempt, node: f[3], start: t, slot: slot == 0 ? 9 : slot))
                } else if f[0] == "end", let i = runs.lastIndex(where: { $0.job == job && $0.attempt == attempt && $0.node == f[3] && $0.end == nil }) {
                    runs[i].end = t
                }
            }
            out[key] = runs
        }
        return out
    }
}
