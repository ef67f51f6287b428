import ArgumentParser

@main
struct SSDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ssd", abstract: "SSD300 object detection")
}
