import FuzzDriver
import MeshFuzzing

@_cdecl("fuzz_plan_main")
func entry(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { data, size in
        check(FuzzTargets.plan(input(data, size)))
        return 0
    }
}
