import ArgumentParser
import FleetFiles
import FleetProtocol
import Foundation
import UpdatePage

extension FleetClientCommand {
    /// `fleet-client serve`: the page on 127.0.0.1:9999 with the "UPDATE MY MACHINE" button.
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve the page on 127.0.0.1:9999: this host's state and a button that starts a run.",
            discussion: """
                Takes the listening socket from systemd (socket activation: LISTEN_FDS/LISTEN_PID, fd 3) when \
                it passes one, else binds 127.0.0.1:9999 (or --listen). It serves 127.0.0.1 only and answers \
                only requests whose Host is 127.0.0.1:PORT or localhost:PORT and whose Origin (required for a \
                press) is the page's own. A press starts `fleet-client run` unless one the page started is \
                going; runs start at most once per --min-interval.
                """)

        @OptionGroup var config: ConfigOption

        @Option(
            help: ArgumentHelp("Bind this loopback address instead of 127.0.0.1:9999.", valueName: "127.0.0.1:port"))
        var listen: String?

        @Option(
            help: ArgumentHelp(
                "Seconds after a run started before the button may start another.", valueName: "seconds"))
        var minInterval = 60

        func validate() throws {
            if let listen {
                do {
                    _ = try ListenAddress(parsing: listen)
                } catch {
                    throw ValidationError(error.description)
                }
            }
            guard minInterval >= 0 else { throw ValidationError("--min-interval must be 0 or more seconds") }
        }

        func run() async throws {
            let client = try config.load()
            var settings = UpdatePageConfiguration(
                host: client.host.value, stateDirectory: client.stateDirectory,
                clientConfigurationPath: URL(fileURLWithPath: config.path).standardizedFileURL.path)
            settings.minimumRunInterval = .seconds(minInterval)
            // Errors here (a socket from systemd that is not 127.0.0.1, a port in use) are printed as they are.
            let socket = try ListeningSocket.forServe(listen: listen, environment: ProcessInfo.processInfo.environment)
            let server = try await UpdatePageServer.start(settings, socket: socket)
            let address = "http://127.0.0.1:\(server.port)/"
            FileIO.writeToStream(
                2, "fleet-client[\(client.host.value)]: serving \(address) (\(socket.source.rawValue))\n")
            await server.run()
        }
    }
}
