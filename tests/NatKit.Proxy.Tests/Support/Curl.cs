using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using NatKit.TestSupport;

namespace NatKit.Proxy.Tests.Support;

/// <summary>Runs curl with a hard timeout, hashing its (binary) stdout as it streams.</summary>
public static class Curl
{
    public sealed record Result(int ExitCode, string Sha256, long Length, string Text, string Errors);

    public static async Task<Result> RunAsync(IEnumerable<string> arguments, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(TestHost.Which("curl") ?? "curl")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add("--silent");
        info.ArgumentList.Add("--show-error");
        info.ArgumentList.Add("--noproxy");
        info.ArgumentList.Add("");
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info)!;
        using var cts = new CancellationTokenSource(timeout);
        var errors = process.StandardError.ReadToEndAsync(cts.Token);
        try
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var head = new MemoryStream();
            var buffer = new byte[64 * 1024];
            long total = 0;
            int n;
            var stdout = process.StandardOutput.BaseStream;
            while ((n = await stdout.ReadAsync(buffer, cts.Token)) > 0)
            {
                sha.AppendData(buffer, 0, n);
                if (head.Length < 4096)
                {
                    head.Write(buffer, 0, Math.Min(n, 4096));
                }

                total += n;
            }

            await process.WaitForExitAsync(cts.Token);
            return new Result(process.ExitCode, Convert.ToHexString(sha.GetHashAndReset()), total,
                Encoding.UTF8.GetString(head.ToArray()), await errors);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"curl {string.Join(' ', arguments)} did not finish in {timeout}");
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
