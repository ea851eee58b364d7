import Foundation
import MeshAgent
import MeshCore
import MeshTestSupport
import MeshTransport
import MeshWire
import Testing

/// The inputs that stopped a 0.3 mesh, sent to a real three-agent mesh: each is refused with a
/// clear error or handled, every agent stays up, and a normal job still runs.
@Suite("no input can stop the mesh, real processes")
struct PoisonProcessTests {
    let coordinator = CoordinatorProcessTests()
    let jobs = JobProcessTests()

    @Test("the poison table: out-of-range lease, raw lease 2^64-1, term 2^64-1 from a peer key, offsets past 2^63, 70,000 result files, a hard link in RESULTS")
    func poisonTable() async throws {
        let s = try Scratch()
        defer { s.cleanUp() }
        try await onProcessThread {
            let agents = try coordinator.mesh(s, count: 3, voters: 3)
            let dir = agents[1].dataDir
            let secret = try s.secret(of: dir)
            let client = try MeshClient(address: DataDirectory(path: dir).localAddress, secret: secret)
            defer { client.close() }

            // `mesh submit --lease 1e300h`: the CLI refuses it with the bound (exit 64).
            let cli = try s.mesh(["submit", "--data-dir", dir, "--no-code", "--lease", "1e300h", "--", "true"])
            #expect(cli.exitCode == 64 && cli.stderr.contains("--lease is from 0 to 30 days"), "\(cli)")

            // A raw write with lease_seconds 2^64-1 (and a timeout, a drain deadline): refused by the agent.
            for command: ClusterState.Command in [
                .submit(JobSpec(command: ["true"], leaseSeconds: .max), Provenance(), at: 0, via: NodeID(0)),
                .submit(JobSpec(command: ["true"], timeoutSeconds: .max), Provenance(), at: 0, via: NodeID(0)),
                .drain(name: "n2", deadlineMillis: .max, leaving: false),
            ] {
                do {
                    let (outcome, _) = try client.write(command, timeout: .seconds(10))
                    Issue.record("accepted: \(outcome)")
                } catch {
                    #expect("\(error)".contains("at most") || "\(error)".contains("from 0 to"), "\(error)")
                }
            }

            // A Raft appendResponse with term 2^64-1, sent with the peer key to every agent.
            for a in agents {
                guard let id = s.status(a.dataDir)?.nodeID else { continue }
                let peer = try RequestClient(endpoint: "tcp://\(a.address)", security: TransportSecurity.curve(secret.keys).client(as: .peer))
                try peer.waitConnected(timeout: .seconds(5))
                let p = Consensus.Packet(from: NodeID(0xbad), to: NodeID(id), term: .max, message: .appendResponse(.init(success: false, index: .max)))
                try peer.send([Wire.encode(p)])
                usleep(100_000)
                peer.close()
            }

            // BlobGet and LogRequest with offsets past 2^63: error replies.
            var get = WireBlobGet()
            get.hash = String(repeating: "a", count: 64)
            get.offset = 1 << 63
            #expect(throws: ClientError.self) { _ = try client.call(.blobGet(get), timeout: .seconds(5)) }

            // A job that names 70,000 result files fails with the reason; its node keeps working.
            let many = try s.mesh(["submit", "--data-dir", dir, "--no-code", "--wait", "--", "python3", "-c", """
                import os
                os.makedirs("out")
                for i in range(70000): open("out/%d" % i, "w").close()
                print("RESULTS: out")
                """], timeout: .seconds(180))
            #expect(many.exitCode == 1, "\(many)")
            let manyJob = try #require(jobs.jobs(s, dir).last)
            #expect(manyJob.state == .failed && manyJob.reason.contains("70000 result files, over the limit of 10000"), "\(manyJob.reason)")

            // A hard link to a file outside the workspace, named in RESULTS: refused, listed under the attempt.
            let secretFile = s.dir.sub("secret.txt")
            try "not yours\n".write(toFile: secretFile, atomically: true, encoding: .utf8)
            chmod(secretFile, 0o600)
            let linked = try s.mesh(["submit", "--data-dir", dir, "--no-code", "--wait", "--", "/bin/sh", "-c",
                                     "mkdir out && ln '\(secretFile)' out/stolen && echo mine > out/own && chmod 600 out/own && echo 'RESULTS: out'"])
            #expect(linked.exitCode == 0, "\(linked)")
            let linkJob = try #require(jobs.jobs(s, dir).last)
            #expect(linkJob.results.map(\.path) == ["out/own"])
            #expect(linkJob.current?.refused.contains { $0.hasPrefix("out/stolen: a hard link") } == true, "\(linkJob.current?.refused ?? [])")
            let show = try s.mesh(["show", "\(linkJob.id)", "--data-dir", dir])
            #expect(show.stdout.contains("refused: out/stolen: a hard link"), "\(show)")
            let dest = s.dir.sub("results")
            let fetched = try s.mesh(["results", "\(linkJob.id)", dest, "--data-dir", dir])
            #expect(fetched.exitCode == 0, "\(fetched)")
            var st = stat()
            #expect(stat(dest + "/out/own", &st) == 0 && st.st_mode & 0o777 == 0o600, "a copy keeps no more permission than its source")

            // A tracked symbolic link is not packed, and submit says so.
            let repo = try jobs.repository(s, ["data.txt": "x\n"])
            symlink("data.txt", repo + "/link")
            let git = try ChildProcess.spawn("/bin/sh", ["-c", "cd '\(repo)' && git add link && git -c user.email=t@t -c user.name=t commit -qm link"])
            #expect(git.wait(timeout: .seconds(20)) == .exited(0))
            let withLink = try jobs.mesh(s, in: repo, ["submit", "--data-dir", dir, "--wait", "--", "test", "-f", "data.txt"])
            #expect(withLink.exitCode == 0 && withLink.stderr.contains("left out of the code bundle") && withLink.stderr.contains("link"), "\(withLink)")

            // Every agent is up, one coordinator leads in a sane term, and a normal job runs.
            for a in agents { #expect(a.process.wait(timeout: .zero) == nil, "an agent died:\n\((try? String(contentsOfFile: a.log, encoding: .utf8)) ?? "")") }
            let status = try #require(s.status(agents[0].dataDir))
            #expect(status.coordinator.leader != 0 && status.coordinator.term < 1000, "\(status.coordinator)")
            let normal = try s.mesh(["submit", "--data-dir", agents[2].dataDir, "--no-code", "--wait", "--", "true"])
            #expect(normal.exitCode == 0, "\(normal)")
        }
    }
}
