import CMeshSystem
import Foundation
import MeshCore
import Synchronization

private let supervisorSignal = Atomic<Int32>(0)

/// `mesh supervise DIR`: one process per attempt, in its own session, that outlives the agent.
/// It runs the job in a session of its own with its output in a pipe, keeps a capped log, stops
/// the job (SIGTERM to its process group, SIGKILL after a grace) on timeout, on a stop request or
/// when its lease runs out, kills whatever the job left behind (it is the subreaper of the job's
/// descendants), collects and packs the results, and writes `result.json`.
public enum Supervisor {
    public static func run(directory: String) -> Int32 {
        let files = AttemptFiles(directory: directory)
        guard let spec = files.read(AttemptSpec.self, files.spec) else {
            FileHandle.standardError.write(Data("mesh supervise: no readable spec.json in \(directory)\n".utf8))
            return 64
        }
        _ = mesh_set_child_subreaper()
        for s in [SIGTERM, SIGINT, SIGHUP] {
            signal(s) { supervisorSignal.store($0, ordering: .relaxed) }
        }
        signal(SIGPIPE, SIG_IGN)
        let me = getpid()
        if let t = ProcessIdentity.startTime(me) {
            try? files.writeAtomically(files.supervisorPID, Array("\(me) \(t)\n".utf8))
        }
        var s = Supervision(spec: spec, files: files)
        let result = s.run()
        do {
            try files.write(result, files.result)
        } catch {
            FileHandle.standardError.write(Data("mesh supervise: cannot write the result: \(error)\n".utf8))
            return 1
        }
        return 0
    }
}

private struct Supervision {
    let spec: AttemptSpec
    let files: AttemptFiles
    var logFD: Int32 = -1
    var logBytes: UInt64 = 0
    var truncated = false
    var line: [UInt8] = []
    var announced: [String] = []

    init(spec: AttemptSpec, files: AttemptFiles) {
        self.spec = spec
        self.files = files
    }

    mutating func run() -> AttemptResult {
        logFD = open(files.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        defer { if logFD >= 0 { close(logFD) } }
        guard Archive.safe(spec.workdir) || spec.workdir.isEmpty else {
            return rejected("the working directory '\(spec.workdir)' is not inside the workspace")
        }
        let cwd = spec.workdir.isEmpty ? files.workspace : files.workspace + "/" + spec.workdir
        var st = stat()
        guard stat(cwd, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            // The workspace itself is the agent's (the machine's); a working directory is the job's.
            return spec.workdir.isEmpty ? failed("no workspace directory") : rejected("no directory \(spec.workdir) in the job's code")
        }
        guard !spec.command.isEmpty else { return failed("no command") }
        // Stopped (superseded, cancelled) or out of lease before the command starts: it never runs.
        // (The agent may write the stop file between spawning us and this point.)
        if let stop = try? String(contentsOfFile: files.stop, encoding: .utf8) {
            return stop.hasPrefix("cancelled") ? AttemptResult(kind: .cancelled, reason: "", endedAt: unixMillis())
                : AttemptResult(kind: .lost, reason: "superseded before it started", endedAt: unixMillis())
        }
        if !ignoresLease, leaseExpiry().map({ BootClock.now().nanoseconds > $0 }) == true {
            return AttemptResult(kind: .lost, reason: "no lease left to start under", endedAt: unixMillis())
        }

        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MESH_") }
        for (k, v) in spec.env { env[k] = v }
        env["MESH_JOB_ID"] = "\(spec.job)"
        env["MESH_ATTEMPT"] = "\(spec.attempt)"
        env["MESH_NODE"] = spec.node
        env["MESH_WORKSPACE"] = files.workspace
        env["PWD"] = cwd
        env["CUDA_VISIBLE_DEVICES"] = spec.gpus.map(String.init).joined(separator: ",")

        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { return failed("pipe: \(String(cString: strerror(errno)))") }
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let argv = spec.command.map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        var pid: pid_t = 0
        let rc = mesh_spawn_job(&pid, spec.command[0], argv, envp, pipeFDs[1], cwd)
        argv.forEach { free($0) }
        envp.forEach { free($0) }
        close(pipeFDs[1])
        let output = pipeFDs[0]
        defer { close(output) }
        guard rc == 0 else {
            // A command that does not exist or cannot be executed is the job's failure, as in a
            // shell (127, 126), not the machine's: it must not count towards quarantine. So are
            // arguments too long for exec (E2BIG) and a path too long or looping: they fail on
            // every node alike, and would otherwise quarantine them one after the other.
            if [ENOENT, ENOTDIR, EACCES, ENOEXEC, E2BIG, ENAMETOOLONG, ELOOP].contains(rc) {
                note("cannot run \(spec.command[0]): \(String(cString: strerror(rc)))")
                var r = AttemptResult(kind: .exited, code: rc == ENOENT || rc == ENOTDIR ? 127 : 126, endedAt: unixMillis())
                r.logBytes = logBytes
                return r
            }
            return failed("cannot run \(spec.command[0]): \(String(cString: strerror(rc)))")
        }
        let started = AttemptStarted(pid: pid, startTime: ProcessIdentity.startTime(pid) ?? 0, at: unixMillis())
        try? files.write(started, files.started)

        let begin = ContinuousClock.now
        var status: Int32 = 0
        var exited = false
        var exitedAt: ContinuousClock.Instant?
        var stopping: (why: AttemptResult.Kind, reason: String, killAt: ContinuousClock.Instant)?
        var open = true
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            if open {
                var p = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, exited ? 20 : 100)
                if p.revents != 0 {
                    let n = buffer.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
                    if n > 0 { consume(buffer[0..<n]) } else if n == 0 || (errno != EINTR && errno != EAGAIN) { open = false }
                }
            } else {
                usleep(20_000)
            }
            if !exited {
                let r = waitpid(pid, &status, WNOHANG)
                if r == pid {
                    exited = true
                    exitedAt = .now
                }
            }
            // The job is gone; output held open by something it left behind is not waited for.
            if exited, !open || ContinuousClock.now - exitedAt! > .milliseconds(300) { break }
            if exited { continue }
            let now = ContinuousClock.now
            if let s = stopping {
                if now >= s.killAt { kill(-pid, SIGKILL) }
                continue
            }
            var why: (AttemptResult.Kind, String)?
            if let sig = Optional(supervisorSignal.load(ordering: .relaxed)), sig != 0 {
                why = (.lost, "its supervisor was told to stop (signal \(sig))")
            } else if let stop = try? String(contentsOfFile: files.stop, encoding: .utf8) {
                why = stop.hasPrefix("cancelled") ? (.cancelled, "") : (.lost, "superseded: the coordinator gave it up")
            } else if spec.timeoutSeconds > 0, now - begin > .seconds(spec.timeoutSeconds, limit: Limits.maxTimeoutSeconds) {
                why = (.timedOut, "")
            } else if !ignoresLease, let expiry = leaseExpiry(), BootClock.now().nanoseconds > expiry {
                why = (.lost, "its node lost touch with the coordinator for longer than the lease")
            }
            if let why {
                kill(-pid, SIGTERM)
                stopping = (why.0, why.1, now + .seconds(double: min(spec.killGrace, 1e8)))
                note("stopping the job (\(why.0 == .timedOut ? "timeout" : why.0 == .cancelled ? "cancelled" : why.1)): SIGTERM, SIGKILL in \(spec.killGrace) s")
            }
        }
        // Whatever the job left behind, in its group or reparented to us, goes too.
        kill(-pid, SIGKILL)
        killDescendants()
        if line.count > 0 { scan(line) }

        var result: AttemptResult
        if let s = stopping {
            result = AttemptResult(kind: s.why, reason: s.reason, endedAt: unixMillis())
        } else if status & 0x7f == 0 {
            result = AttemptResult(kind: .exited, code: (status >> 8) & 0xff, endedAt: unixMillis())
        } else {
            result = AttemptResult(kind: .signalled, code: status & 0x7f, endedAt: unixMillis())
        }
        collect(into: &result)
        return result
    }

    /// Debug builds only: fencing switched off for the chaos harness's own test.
    var ignoresLease: Bool {
        #if DEBUG
        spec.ignoreLease == true
        #else
        false
        #endif
    }

    func leaseExpiry() -> Int64? {
        (try? String(contentsOfFile: files.lease, encoding: .utf8)).flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// The job cannot run as given (the job's failure, wherever it runs).
    mutating func rejected(_ why: String) -> AttemptResult {
        var r = AttemptResult(kind: .rejected, reason: why, endedAt: unixMillis())
        r.logBytes = logBytes
        note(why)
        return r
    }

    func failed(_ why: String) -> AttemptResult {
        var r = AttemptResult(kind: .failedToStart, reason: why, endedAt: unixMillis())
        r.logBytes = logBytes
        return r
    }

    /// Output: into the log up to its limit; `RESULTS:` lines noted.
    mutating func consume(_ bytes: ArraySlice<UInt8>) {
        appendLog(bytes)
        for b in bytes {
            if b == UInt8(ascii: "\n") {
                scan(line)
                line.removeAll(keepingCapacity: true)
            } else if line.count < 4096 {
                line.append(b)
            }
        }
    }

    mutating func scan(_ l: [UInt8]) {
        let prefix = Array("RESULTS:".utf8)
        guard l.starts(with: prefix), announced.count < 10_000 else { return }
        let path = String(decoding: l[prefix.count...], as: UTF8.self).trimmingCharacters(in: .whitespaces)
        if !path.isEmpty { announced.append(path) }
    }

    mutating func appendLog(_ bytes: ArraySlice<UInt8>) {
        guard logFD >= 0, !truncated else { return }
        let room = spec.logLimit > logBytes ? spec.logLimit - logBytes : 0
        let part = bytes.prefix(Int(min(UInt64(bytes.count), room)))
        part.withUnsafeBytes { _ = write(logFD, $0.baseAddress, $0.count) }
        logBytes += UInt64(part.count)
        if part.count < bytes.count {
            truncated = true
            note("log truncated at \(ByteCount(spec.logLimit)); the rest of the output is discarded")
        }
    }

    mutating func note(_ s: String) {
        let b = Array("\n[mesh] \(s)\n".utf8)
        if logFD >= 0 { b.withUnsafeBytes { _ = write(logFD, $0.baseAddress, $0.count) } }
        logBytes += UInt64(b.count)
    }

    /// Kills and reaps every process that has become our child (daemons the job left).
    func killDescendants() {
        for _ in 0..<50 {
            var status: Int32 = 0
            while waitpid(-1, &status, WNOHANG) > 0 {}
            let children = Self.children()
            if children.isEmpty { return }
            for pid in children { kill(pid, SIGKILL) }
            usleep(10_000)
        }
    }

    /// Our children, from /proc/self/task/*/children (else a scan of every process's parent).
    static func children() -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        var out: [Int32] = []
        var listed = false
        for tid in tasks {
            guard let text = try? String(contentsOfFile: "/proc/self/task/\(tid)/children", encoding: .utf8) else { continue }
            listed = true
            out += text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        if listed { return out }
        let me = getpid()
        return ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { name in
            Int32(name).flatMap { ProcessIdentity.parent($0) == me ? $0 : nil }
        }
    }

    /// The result files: `--results` globs and `RESULTS:` paths, each resolved inside the
    /// workspace (no `..`, no link out), regular files only, within the size limit; hashed and
    /// packed with the log into `results.archive`.
    mutating func collect(into result: inout AttemptResult) {
        let root = realpath(files.workspace, nil).map { p in defer { free(p) }; return String(cString: p) } ?? files.workspace
        let cwd = spec.workdir.isEmpty ? root : root + "/" + spec.workdir
        var candidates: [String] = []
        for pattern in spec.results {
            guard !pattern.hasPrefix("/"), !pattern.split(separator: "/").contains("..") else {
                result.refused.append("\(pattern): a results pattern must stay inside the workspace")
                continue
            }
            var g = glob_t()
            if glob(cwd + "/" + pattern, 0, nil, &g) == 0 {
                for i in 0..<Int(g.gl_pathc) { if let p = g.gl_pathv[i] { candidates.append(String(cString: p)) } }
            }
            globfree(&g)
        }
        for a in announced {
            candidates.append(a.hasPrefix("/") ? a : cwd + "/" + a)
        }
        var chosen: [String: String] = [:]  // relative path -> real path
        var total: UInt64 = 0
        // A report is one log entry: the files it names, and the bytes of their paths, are capped
        // (a job that names more fails with the reason rather than choke the coordinator).
        let maxFiles = min(max(spec.maxResultFiles ?? Limits.defaultResultFiles, 1), Limits.maxResultFiles)
        var manifestBytes = 0
        var over = 0
        func add(_ real: String) {
            let rel = String(real.dropFirst(root.count + 1))
            guard chosen[rel] == nil else { return }
            var st = stat()
            guard lstat(real, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return }
            // A hard link may be a file from outside the workspace (/etc/shadow linked in by the
            // job): a link count above one is refused, as symbolic links out are.
            guard st.st_nlink <= 1 else {
                result.refused.append("\(rel): a hard link (link count \(st.st_nlink))")
                return
            }
            guard chosen.count < maxFiles, manifestBytes + rel.utf8.count + 100 <= Limits.maxManifestBytes else {
                over += 1
                return
            }
            guard UInt64(st.st_size) <= spec.resultsLimit - total else {
                result.refused.append("\(rel): over the results limit of \(ByteCount(spec.resultsLimit))")
                return
            }
            total += UInt64(st.st_size)
            manifestBytes += rel.utf8.count + 100
            chosen[rel] = real
        }
        for c in candidates {
            guard let rp = realpath(c, nil) else {
                result.refused.append("\(shown(c, root)): no such file")
                continue
            }
            let real = String(cString: rp)
            free(rp)
            guard real.hasPrefix(root + "/") else {
                result.refused.append("\(shown(c, root)): outside the workspace")
                continue
            }
            var st = stat()
            guard stat(real, &st) == 0 else { continue }
            if st.st_mode & S_IFMT == S_IFDIR {
                let e = FileManager.default.enumerator(atPath: real)
                while let sub = e?.nextObject() as? String {
                    let full = real + "/" + sub
                    var ls = stat()
                    // Links inside a results folder are not followed.
                    if lstat(full, &ls) == 0, ls.st_mode & S_IFMT == S_IFREG { add(full) }
                }
            } else {
                add(real)
            }
        }
        if over > 0 {
            let why = "it named \(chosen.count + over) result files, over the limit of \(maxFiles) files or \(Limits.maxManifestBytes >> 20) MiB of paths (mesh set max_result_files)"
            note("results: \(why); none are kept")
            chosen.removeAll()
            if result.kind != .cancelled, result.kind != .lost { (result.kind, result.code, result.reason) = (.rejected, 0, why) }
        }
        var entries: [Archive.Entry] = []
        for (rel, real) in chosen.sorted(by: { $0.key < $1.key }) {
            guard let h = try? SHA256Hasher.file(real) else { continue }
            result.results.append(.init(path: rel, size: h.size, sha256: h.hash))
            entries.append(Archive.Entry(path: rel, source: real))
        }
        entries.append(Archive.Entry(path: ".mesh/log", source: files.log))
        if let packed = try? Archive.pack(entries, to: files.resultsArchive, keepModes: true) {
            result.archiveHash = packed.hash
            result.archiveSize = packed.size
        }
        result.logBytes = logBytes
    }

    func shown(_ path: String, _ root: String) -> String {
        path.hasPrefix(root + "/") ? String(path.dropFirst(root.count + 1)) : path
    }
}
