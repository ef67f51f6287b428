import ArgumentParser

@main
struct SSDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssd",
        abstract: "SSD300 object detection: train, evaluate and detect, numerically faithful to the reference PyTorch tutorial.",
        subcommands: [Demo.self, Synthesize.self, CreateDataLists.self, Train.self, Eval.self, Detect.self, MapCommand.self, Convert.self,
                      Export.self, Bench.self, Info.self])
}
