import MeshCore
import MeshPlan
import Testing

/// The plan from issue 6: 2 widths × 2 optimisers × 2 optsets, two stages.
let issuePlan = """
    script: |
      python run.py --model {model_id} --init {init} --data {data}
    sweep:                      # "default" is accepted as another name for it
      project: demo
      width: [256, 1024]        # a list is an axis of the Cartesian product
      opt: [sgd, adam]
      optset:                   # a list of mappings is one axis; fields are {optset.lr}
        - {lr: 0.1, wd: 0.0}
        - {lr: 0.01, wd: 0.1}
      model_id: "{project}-{width}-{opt}-{name}"   # values may refer to other values
      tags: "{project},{opt}"
      pretrain_data: data/a.jsonl
      finetune_data: data/b.jsonl
    stages:
      - name: pretrain          # {name} is the stage's name
        init: scratch
        data: "{pretrain_data}"
      - name: finetune
        init: $(pretrain.model_id)   # that cell's pretrain value; finetune waits for pretrain
        data: "{finetune_data}"
    """

func expand(_ yaml: String, limit: Int = 10_000) throws(PlanError) -> [ExpandedJob] {
    try Plan.parse(yaml: yaml).expand(limit: limit)
}

func script(_ job: ExpandedJob) -> String { job.command[2] }

func parameter(_ job: ExpandedJob, _ name: String) -> String? { job.parameters.first { $0.name == name }?.value }

func planError(_ yaml: String, limit: Int = 10_000) -> PlanError? {
    do {
        _ = try expand(yaml, limit: limit)
        return nil
    } catch {
        return error
    }
}

@Suite struct PlanExpansionTests {
    @Test func theIssuesPlanExpandsToSixteenJobsInEightPairs() throws {
        let jobs = try expand(issuePlan)
        #expect(jobs.count == 16)
        #expect(jobs.filter { $0.stage == "pretrain" }.count == 8)
        // Combination 0: width 256, sgd, optset 0.
        #expect(jobs[0].labels == ["256", "sgd", "lr=0.1,wd=0.0"])
        #expect(jobs[0].command == ["/bin/sh", "-c", "python run.py --model demo-256-sgd-pretrain --init scratch --data data/a.jsonl\n"])
        #expect(jobs[0].dependsOn == [])
        #expect(script(jobs[1]) == "python run.py --model demo-256-sgd-finetune --init demo-256-sgd-pretrain --data data/b.jsonl\n")
        #expect(jobs[1].dependsOn == [0])
        // Every finetune depends on the pretrain of its own combination, and only that one.
        for (i, j) in jobs.enumerated() where j.stage == "finetune" {
            #expect(j.dependsOn == [i - 1])
            #expect(jobs[i - 1].combination == j.combination)
            #expect(parameter(j, "init") == parameter(jobs[i - 1], "model_id"))
        }
        // Last axis fastest: combination 1 differs from 0 in optset only.
        #expect(jobs[2].labels == ["256", "sgd", "lr=0.01,wd=0.1"])
        #expect(parameter(jobs[2], "optset.lr") == "0.01")
        #expect(jobs[15].labels == ["1024", "adam", "lr=0.01,wd=0.1"])
        #expect(parameter(jobs[15], "tags") == "demo,adam")
        #expect(jobs[15].environment["MESH_PARAM_OPTSET_LR"] == "0.01")
        #expect(jobs[15].environment["MESH_PARAM_MODEL_ID"] == "demo-1024-adam-finetune")
        #expect(jobs[15].environment["MESH_STAGE"] == "finetune")
    }

    @Test func withoutStagesTheSweepIsOneStage() throws {
        let jobs = try expand("""
            script: echo {a} {b}
            default:
              a: [1, 2, 3]
              b: [x, y]
            """)
        #expect(jobs.map(script) == ["echo 1 x", "echo 1 y", "echo 2 x", "echo 2 y", "echo 3 x", "echo 3 y"])
        #expect(Set(jobs.map(\.stage)) == ["main"])
        #expect(jobs.allSatisfy { $0.dependsOn.isEmpty })
    }

    @Test func threeStagesChainAndSkipAStage() throws {
        let jobs = try expand("""
            script: run {step} {from}
            sweep:
              seed: [1, 2]
            stages:
              - name: a
                step: "a{seed}"
                from: none
              - name: b
                step: "b{seed}"
                from: $(a.step)
              - name: c
                step: "c{seed}"
                from: $(a.step)+$(b.step)
            """)
        #expect(jobs.count == 6)
        #expect(jobs.map(script) == ["run a1 none", "run b1 a1", "run c1 a1+b1", "run a2 none", "run b2 a2", "run c2 a2+b2"])
        #expect(jobs.map(\.dependsOn) == [[], [0], [0, 1], [], [3], [3, 4]])
    }

    @Test func stagesOverrideSweepValuesAndResources() throws {
        let jobs = try expand("""
            script: train --lr {lr}
            gpus: 1
            timeout: 1h30m
            sweep:
              lr: 0.1
              retries: 2
            stages:
              - name: small
              - name: big
                lr: 0.01
                gpus: 4
                results: [out/*.pt, metrics.json]
            """)
        #expect(jobs.map(script) == ["train --lr 0.1", "train --lr 0.01"])
        #expect(jobs[0].resources == ResourceOptions(gpus: 1, timeoutSeconds: 5400, retries: 2))
        #expect(jobs[1].resources == ResourceOptions(gpus: 4, timeoutSeconds: 5400, retries: 2, results: ["out/*.pt", "metrics.json"]))
    }

    @Test func valuesResolveThroughSeveralSteps() throws {
        let jobs = try expand("""
            script: echo {d}
            sweep:
              d: "{c}!"
              c: "{b}{b}"
              b: "{a}-"
              a: [x, y]
            """)
        #expect(jobs.map(script) == ["echo 'x-x-!'", "echo 'y-y-!'"])
    }

    @Test func hostileValuesReachTheScriptQuoted() throws {
        let jobs = try expand("""
            script: printf '%s\\n' {v} > out
            sweep:
              v: ["a;touch /tmp/canary", "$(touch /tmp/canary)", "`touch /tmp/canary`", "it's \\"q\\"", "line1\\nline2", plain]
            """)
        #expect(jobs.map(script) == [
            "printf '%s\\n' 'a;touch /tmp/canary' > out",
            "printf '%s\\n' '$(touch /tmp/canary)' > out",
            "printf '%s\\n' '`touch /tmp/canary`' > out",
            "printf '%s\\n' 'it'\\''s \"q\"' > out",
            "printf '%s\\n' 'line1\nline2' > out",
            "printf '%s\\n' plain > out",
        ])
        // In the environment they are the raw text.
        #expect(jobs[1].environment["MESH_PARAM_V"] == "$(touch /tmp/canary)")
    }

    @Test func shellSyntaxInTheScriptIsLeftAlone() throws {
        let jobs = try expand("""
            script: |
              for i in {1..3}; do echo ${HOME} $(date +%s) {{lr}} '{"k": [1]}' | awk '{print $1}'; done; echo {lr}
            sweep:
              lr: [0.1]
            """)
        #expect(script(jobs[0]) == "for i in {1..3}; do echo ${HOME} $(date +%s) {lr} '{\"k\": [1]}' | awk '{print $1}'; done; echo 0.1\n")
    }

    @Test func identicalCellsHaveOneIdentity() throws {
        // The stage sets `width`, so both widths give the same finetune job.
        let jobs = try expand("""
            script: run {width} {stage_arg}
            sweep:
              width: [1, 2]
            stages:
              - name: a
                stage_arg: "{width}"
              - name: b
                width: 9
                stage_arg: fixed
            """)
        let ids = jobs.map { $0.identityBasis(bundle: "h", dependencies: []) }
        #expect(jobs.count == 4)
        #expect(Set(ids).count == 3)
        #expect(ids[1] == ids[3])
        // Bundle, resources and dependencies are part of it.
        #expect(jobs[0].identityBasis(bundle: "h", dependencies: []) != jobs[0].identityBasis(bundle: "i", dependencies: []))
        #expect(jobs[0].identityBasis(bundle: "h", dependencies: []) != jobs[0].identityBasis(bundle: "h", dependencies: ["x"]))
    }

    @Test func matrixSubstitutesArgumentsAsTheyAreAndQuotesShellScripts() throws {
        let plan = Plan(command: .argv(["python", "train.py", "--lr={lr}", "--seed", "{seed}"]),
                        axes: [Plan.Axis(name: "lr", choices: [[Plan.Value("lr", "0.1")], [Plan.Value("lr", "0.01")]]),
                               Plan.Axis(name: "seed", choices: [[Plan.Value("seed", "1")], [Plan.Value("seed", "a b;c")]])])
        let jobs = try plan.expand(limit: 100)
        #expect(jobs.map(\.command) == [
            ["python", "train.py", "--lr=0.1", "--seed", "1"], ["python", "train.py", "--lr=0.1", "--seed", "a b;c"],
            ["python", "train.py", "--lr=0.01", "--seed", "1"], ["python", "train.py", "--lr=0.01", "--seed", "a b;c"],
        ])
        let sh = Plan(command: .argv(["bash", "-ec", "echo {x} >> out"]), axes: [Plan.Axis(name: "x", choices: [[Plan.Value("x", "$(id);x")]])])
        #expect(try sh.expand(limit: 1)[0].command == ["bash", "-ec", "echo '$(id);x' >> out"])
    }
}

@Suite struct PlanErrorTests {
    @Test(arguments: [
        ("script: x\nstagse: []\n", 2, "unknown key 'stagse' (did you mean 'stages'?)"),
        ("script: x\nsweep:\n  a: []\n", 3, "axis 'a' is empty"),
        ("script: echo {a}\nsweep:\n  a: \"{b}\"\n  b: \"{a}\"\n", 3, "cycle: a → b → a"),
        ("script: echo {nope}\nsweep:\n  a: 1\n", 1, "{nope} refers to a value that does not exist"),
        ("script: x {i}\nstages:\n  - name: a\n    i: $(b.x)\n  - name: b\n    x: 1\n", 4, "a later stage"),
        ("script: x {i}\nstages:\n  - name: a\n    i: $(zz.x)\n", 4, "stage that does not exist"),
        ("script: x {i}\nstages:\n  - name: a\n    x: 1\n    i: 0\n  - name: b\n    i: $(a.y)\n", 7, "stage a has no value 'y'"),
        ("script: x\nsweep: [1, 2]\n", 2, "`sweep` is a mapping"),
        ("script: x\nsweep:\n  a: [1, 2\n", 4, "not valid YAML"),
        ("script: x\nstages:\n  - name: a\n    v: [1, 2]\n", 4, "axes belong in `sweep`"),
        ("script: x\nstages:\n  - v: 1\n", 3, "has no `name`"),
        ("script: x\ngpus: many\n", 2, "`gpus` takes a whole number"),
        ("script: x\ntimeout: soon\n", 2, "`timeout` takes a duration"),
        ("script: x\nresults: ../up\n", 2, "inside the workspace"),
        ("sweep:\n  a: 1\n", 1, "no `script:`"),
        ("script: x\nsweep:\n  o:\n    - {a: 1}\n    - {b: 2}\n", 5, "same fields"),
        ("script: x {o}\nsweep:\n  o:\n    - {a: 1}\n", 1, "'o' has fields"),
        ("script: x\nsweep: {a: 1}\ndefault: {a: 2}\n", 3, "both `sweep` and `default`"),
    ] as [(String, Int, String)])
    func badPlansSayWhereAndWhat(yaml: String, line: Int, message: String) {
        let error = planError(yaml)
        #expect(error != nil)
        #expect(error?.line == line, "\(String(describing: error))")
        #expect(error?.message.contains(message) == true, "\(String(describing: error))")
    }

    @Test func tooManyJobsIsRefusedBeforeExpansionWithTheCount() {
        let error = planError("""
            script: x {a}{b}{c}
            sweep:
              a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
              b: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
              c: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
            stages:
              - name: s1
              - name: s2
            """, limit: 1000)
        #expect(error?.message.contains("makes 2000 jobs") == true, "\(String(describing: error))")
        #expect(error?.message.contains("limit of 1000") == true)
        // Absurd products do not overflow.
        let huge = "script: x\nsweep:\n" + (0..<30).map { "  a\($0): [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n" }.joined()
        #expect(planError(huge)?.message.contains("more than") == true)
    }
}
