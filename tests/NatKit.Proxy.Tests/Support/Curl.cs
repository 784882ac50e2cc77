using System.Security.Cryptography;
using System.Text;
using NatKit.Net;
using NatKit.TestSupport;

namespace NatKit.Proxy.Tests.Support;

/// <summary>Runs curl with a hard timeout (through NatKit's one launcher); its (binary) stdout goes to a file of its
/// own, hashed afterwards, and removed.</summary>
public static class Curl
{
    public sealed record Result(int ExitCode, string Sha256, long Length, string Text, string Errors);

    public static async Task<Result> RunAsync(IEnumerable<string> arguments, TimeSpan timeout)
    {
        var args = arguments.ToArray();
        var dir = Directory.CreateTempSubdirectory("natkit-curl-").FullName;
        try
        {
            var output = Path.Combine(dir, "stdout");
            var curl = TestHost.Which("curl") ?? "curl";
            var r = await ChildProcess.RunAsync("sh", ["-c", "exec \"$0\" \"$@\" >\"$OUT\"", curl, "--silent", "--show-error", "--noproxy", "", .. args],
                timeout, options: new ChildProcessOptions { Environment = new Dictionary<string, string> { ["OUT"] = output }, Name = "curl" });
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var head = new MemoryStream();
            var buffer = new byte[64 * 1024];
            long total = 0;
            int n;
            await using (var stdout = File.OpenRead(output))
            {
                while ((n = await stdout.ReadAsync(buffer)) > 0)
                {
                    sha.AppendData(buffer, 0, n);
                    if (head.Length < 4096)
                    {
                        head.Write(buffer, 0, Math.Min(n, 4096));
                    }

                    total += n;
                }
            }

            return new Result(r.ExitCode, Convert.ToHexString(sha.GetHashAndReset()), total,
                Encoding.UTF8.GetString(head.ToArray()), r.Errors);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>A large file of deterministic pseudo-random bytes, written once, with its SHA-256.</summary>
public sealed class BigPayload : IDisposable
{
    public const long Size = 100L * 1024 * 1024;

    public BigPayload()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"natkit-proxy-{Environment.ProcessId}.bin");
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using var file = new FileStream(Path, FileMode.Create, FileAccess.Write, FileShare.Read, 1 << 20);
        var buffer = new byte[1 << 20];
        var x = 0x9E3779B97F4A7C15UL;
        for (long written = 0; written < Size; written += buffer.Length)
        {
            for (var i = 0; i < buffer.Length; i += 8)
            {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(buffer.AsSpan(i), x);
            }

            sha.AppendData(buffer);
            file.Write(buffer);
        }

        Sha256 = Convert.ToHexString(sha.GetHashAndReset());
    }

    public string Path { get; }

    public string Sha256 { get; }

    public void Dispose() => File.Delete(Path);
}
