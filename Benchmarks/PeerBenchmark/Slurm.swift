import Foundation
import MeshAgent

/// A single-host Slurm: munged, slurmctld and slurmd in the foreground, on 127.0.0.1 inside the
/// benchmark's namespace, with a generated key and configuration under `root`.
final class Slurm {
    let root: String
    let cpus: Int
    var munged: ChildProcess?
    var controller: ChildProcess?
    var daemon: ChildProcess?
    let environment: [String: String]

    init(root: String, cpus: Int) throws {
        self.root = root
        self.cpus = cpus
        var env = ProcessInfo.processInfo.environment
        env["SLURM_CONF"] = root + "/slurm.conf"
        environment = env
        let fm = FileManager.default
        for d in ["munge", "state", "spool", "jobs"] {
            try fm.createDirectory(atPath: "\(root)/\(d)", withIntermediateDirectories: true)
        }
        chmod(root + "/munge", 0o700)
        var key = [UInt8](repeating: 0, count: 1024)
        for i in key.indices { key[i] = UInt8.random(in: 0...255) }
        guard fm.createFile(atPath: root + "/munge/munge.key", contents: Data(key), attributes: [.posixPermissions: 0o600]) else {
            throw BenchError("cannot write \(root)/munge/munge.key")
        }
        try configuration.write(toFile: root + "/slurm.conf", atomically: true, encoding: .utf8)
    }

    /// Everything that differs from Slurm's defaults is here, and printed with the results.
    var configuration: String {
        """
        ClusterName=bench
        SlurmctldHost=localhost(127.0.0.1)
        SlurmUser=root
        SlurmdUser=root
        AuthType=auth/munge
        AuthInfo=socket=\(root)/munge/munge.sock
        CredType=cred/munge
        SlurmctldPort=6817
        SlurmdPort=6818
        StateSaveLocation=\(root)/state
        SlurmdSpoolDir=\(root)/spool
        SlurmctldPidFile=\(root)/slurmctld.pid
        SlurmdPidFile=\(root)/slurmd.pid
        SlurmctldLogFile=\(root)/slurmctld.log
        SlurmdLogFile=\(root)/slurmd.log
        MailProg=/bin/true
        ProctrackType=proctrack/linuxproc
        TaskPlugin=task/none
        SwitchType=switch/none
        MpiDefault=none
        JobAcctGatherType=jobacct_gather/none
        AccountingStorageType=accounting_storage/none
        JobCompType=jobcomp/none
        SelectType=select/cons_tres
        SelectTypeParameters=CR_CPU
        SchedulerType=sched/builtin
        SchedulerParameters=batch_sched_delay=0,default_queue_depth=10000
        MaxArraySize=100001
        MaxJobCount=100000
        MinJobAge=3600
        ReturnToService=2
        SlurmdParameters=config_overrides
        NodeName=localhost NodeAddr=127.0.0.1 CPUs=\(cpus) RealMemory=1000 State=UNKNOWN
        PartitionName=bench Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO

        """
    }

    func start() throws {
        munged = try ChildProcess.spawn("/usr/sbin/munged", [
            "--force", "--foreground", "--key-file=\(root)/munge/munge.key", "--socket=\(root)/munge/munge.sock",
            "--pid-file=\(root)/munge/munged.pid", "--seed-file=\(root)/munge/seed", "--log-file=\(root)/munge/munged.log",
        ], stdout: root + "/munged.out", stderr: root + "/munged.out")
        guard poll(timeout: .seconds(10), { FileManager.default.fileExists(atPath: root + "/munge/munge.sock") }) else {
            throw BenchError("munged did not start (\(root)/munged.out)")
        }
        controller = try ChildProcess.spawn("/usr/sbin/slurmctld", ["-D", "-i", "-f", root + "/slurm.conf"],
                                            environment: environment, stdout: root + "/slurmctld.out", stderr: root + "/slurmctld.out")
        daemon = try ChildProcess.spawn("/usr/sbin/slurmd", ["-D", "-f", root + "/slurm.conf"],
                                        environment: environment, stdout: root + "/slurmd.out", stderr: root + "/slurmd.out")
        guard try poll(every: .milliseconds(200), timeout: .seconds(60), { try sinfo() == "idle" }) else {
            throw BenchError("Slurm's node never became idle (logs in \(root))")
        }
    }

    func sinfo() throws -> String {
        try run("/usr/bin/sinfo", ["-h", "-n", "localhost", "-o", "%t"], environment: environment, timeout: .seconds(20))
            .output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `sbatch`; the job id.
    func sbatch(_ args: [String]) throws -> String {
        let r = try run("/usr/bin/sbatch", ["--parsable", "--output=/dev/null", "--chdir=\(root)/jobs"] + args, environment: environment)
        guard r.status == 0 else { throw BenchError("sbatch failed (\(r.status)): \(r.output)") }
        return r.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ";").first.map(String.init) ?? ""
    }

    func srun(_ args: [String]) throws {
        let r = try run("/usr/bin/srun", ["-n1", "--chdir=\(root)/jobs"] + args, environment: environment)
        guard r.status == 0 else { throw BenchError("srun failed (\(r.status)): \(r.output)") }
    }

    /// True once no task of the job is pending, running or completing (or Slurm has forgotten
    /// the job: it keeps ended jobs for MinJobAge, an hour here).
    func finished(_ job: String) throws -> Bool {
        let r = try run("/usr/bin/squeue", ["-h", "-j", job, "-t", "PD,R,CG,CF,S", "-o", "%i"], environment: environment, timeout: .seconds(30))
        if r.output.contains("Invalid job id") { return true }
        return r.status == 0 && r.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
    }

    /// How many of the job's tasks completed with exit 0 (Slurm keeps them for MinJobAge).
    func completed(_ job: String) throws -> Int {
        let r = try run("/usr/bin/squeue", ["-h", "-r", "-j", job, "-t", "all", "-o", "%T"], environment: environment, timeout: .seconds(30))
        return r.output.split(separator: "\n").filter { $0 == "COMPLETED" }.count
    }

    var processes: [(String, ChildProcess?)] { [("slurmctld", controller), ("slurmd", daemon), ("munged", munged)] }

    func stop() {
        for p in [daemon, controller, munged] { _ = p?.terminate(grace: .seconds(5)) }
    }
}
