using System.IO.Compression;
using System.Xml.Linq;

namespace NatKit.Cli.Tests;

/// <summary>NatKit as a user gets it: `dotnet pack` gives packages with a licence, a readme and XML docs, and
/// `dotnet tool install` of the packed CLI from a local folder feed gives a `natkit` that runs a real verb.
/// Everything goes into one temporary folder, removed at the end.</summary>
public sealed class ToolPackageTests : IDisposable
{
    private static readonly TimeSpan PackDeadline = TimeSpan.FromMinutes(10);

#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    private readonly string _dir = Directory.CreateTempSubdirectory("natkit-tool-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task EveryPackage_HasItsMetadata_AndThePackedTool_InstallsFromAFolderFeed_AndRunsAVerb()
    {
        var feed = Path.Combine(_dir, "feed");
        var tools = Path.Combine(_dir, "tools");
        var root = Natkit.RepositoryRoot;
        // every packable project (the libraries and the CLI), as this test run built them
        var pack = await ExternalProcess.RunAsync("dotnet", ["pack", Path.Combine(root, "NatKit.slnx"),
            "-c", Configuration, "--no-build", "--nologo", "-o", feed], PackDeadline);
        Assert.True(pack.ExitCode == 0, pack.Output + pack.Errors);

        var libraries = Directory.GetDirectories(Path.Combine(root, "src")).Select(Path.GetFileName)
            .Where(n => n != "NatKit.Cli").ToList();
        Assert.NotEmpty(libraries);
        foreach (var name in libraries)
        {
            AssertMetadata(Package(feed, name!), expectXmlDocs: true);
        }

        var tool = Package(feed, "natkit");
        AssertMetadata(tool, expectXmlDocs: false);
        Assert.True(File.Exists(Path.ChangeExtension(tool, ".snupkg")), "no symbols package beside " + tool);

        var install = await ExternalProcess.RunAsync("dotnet", ["tool", "install", "--tool-path", tools, "--add-source", feed, "natkit"],
            PackDeadline, workingDirectory: _dir);
        Assert.True(install.ExitCode == 0, install.Output + install.Errors);
        var natkit = Path.Combine(tools, "natkit");

        var version = await ExternalProcess.RunAsync(natkit, ["--version"], Natkit.Deadline);
        Assert.Equal(0, version.ExitCode);
        Assert.Matches(@"^\d+\.\d+\.\d+", version.Output.Trim());

        var lab = await ExternalProcess.RunAsync(natkit, ["lab", "run", "two-homes"], Natkit.Deadline, workingDirectory: _dir);
        Assert.True(lab.ExitCode == 0, lab.Output + lab.Errors);
        Assert.Matches(@"sent \d+, delivered \d+", lab.Output);

        Natkit.AssertRefused(await ExternalProcess.RunAsync(natkit, ["lab", "run", "--seed", "abc"], Natkit.Deadline, workingDirectory: _dir),
            "--seed abc: expected a whole number");
    }

    /// <summary>The package <paramref name="id"/>.VERSION.nupkg in <paramref name="feed"/> (not NatKit.Traversal.Redis
    /// for NatKit.Traversal: the version starts with a digit).</summary>
    private static string Package(string feed, string id) =>
        Directory.GetFiles(feed, "*.nupkg").Single(f => System.Text.RegularExpressions.Regex.IsMatch(Path.GetFileName(f),
            "^" + System.Text.RegularExpressions.Regex.Escape(id) + @"\.\d+\.\d+\.\d+.*\.nupkg$"));

    private static void AssertMetadata(string package, bool expectXmlDocs)
    {
        using var zip = ZipFile.OpenRead(package);
        var nuspec = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        XDocument spec;
        using (var s = nuspec.Open())
        {
            spec = XDocument.Load(s);
        }

        string? Field(string name) => spec.Descendants().FirstOrDefault(e => e.Name.LocalName == name)?.Value;
        var description = Field("description");
        Assert.False(string.IsNullOrWhiteSpace(description) || description == "Package Description", package + ": no description");
        Assert.Equal("MIT", Field("license"));
        Assert.Equal("README.md", Field("readme"));
        var repository = spec.Descendants().Single(e => e.Name.LocalName == "repository");
        Assert.StartsWith("https://", repository.Attribute("url")?.Value, StringComparison.Ordinal);
        Assert.Contains(zip.Entries, e => e.FullName == "README.md");
        Assert.Contains(zip.Entries, e => e.FullName == "LICENSE");
        if (expectXmlDocs)
        {
            Assert.Contains(zip.Entries, e => e.FullName.StartsWith("lib/", StringComparison.Ordinal) &&
                                              e.FullName.EndsWith(".xml", StringComparison.Ordinal));
        }
    }
}
