using System.Text;
using System.Text.RegularExpressions;
using CsCheck;
using NodeMesh.Authz;
using NodeMesh.Config;

namespace NodeMesh.Tests.Fuzz;

/// <summary>
/// The configuration loader (and through it the policy compiler) against random and mutated JSON, starting
/// from valid documents: it returns a configuration that can be used, or throws a <see cref="ConfigException"/>
/// whose every error names the field it is about; nothing else escapes, and nothing hangs.
/// </summary>
public sealed partial class ConfigFuzzTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    [GeneratedRegex(@"^[a-zA-Z][a-zA-Z0-9]*(\[\d+\])?(\.[a-zA-Z][a-zA-Z0-9]*(\[\d+\])?)*: \S")]
    private static partial Regex FieldPath();

    public static TheoryData<string> ConfigCorpus => Corpus.Names("config");

    [Theory]
    [MemberData(nameof(ConfigCorpus))]
    public void Corpus_EachFile_LoadsOrIsRefusedWithFieldPaths(string name) =>
        AssertLoadsOrIsRefused(Encoding.UTF8.GetString(Corpus.Read("config", name)));

    [Fact]
    public void Corpus_HoldsValidDocuments()
    {
        // The mutations start from these: most must load, or mutations would only ever explore the error paths.
        int valid = Corpus.Configs.Count(c => Loads(Encoding.UTF8.GetString(c.Bytes)));
        Assert.True(valid >= Corpus.Configs.Count - 1, $"only {valid} of {Corpus.Configs.Count} seed configurations load");
    }

    [Fact]
    public void MutatedDocuments_LoadOrAreRefusedWithFieldPaths_AndNothingElseEscapes()
    {
        JsonMutations.Of(Corpus.Configs).Sample(AssertLoadsOrIsRefused, iter: FuzzBudget.Iterations(1_500), seed: FuzzBudget.Seed);
    }

    [Fact]
    public void RandomText_IsRefusedWithAReason_AndNothingElseEscapes()
    {
        Gen.OneOf(Gen.String, Gen.Char['\0', '\x7f'].Array[0, 64].Select(c => new string(c)), Gen.Byte.Array[0, 64].Select(b => Encoding.UTF8.GetString(b)))
            .Sample(AssertLoadsOrIsRefused, iter: FuzzBudget.Iterations(1_000), seed: FuzzBudget.Seed);
    }

    private static bool Loads(string json)
    {
        try
        {
            ConfigLoader.Parse(json, "fuzz.json");
            return true;
        }
        catch (ConfigException)
        {
            return false;
        }
    }

    private static void AssertLoadsOrIsRefused(string json)
    {
        // On a thread of its own, so a parser that never returns fails the property instead of the run.
        Task<AgentConfig?> parse = Task.Run(() =>
        {
            try
            {
                return ConfigLoader.Parse(json, "fuzz.json");
            }
            catch (ConfigException ex)
            {
                Assert.NotEmpty(ex.Errors);
                foreach (string error in ex.Errors)
                {
                    bool syntax = error.Contains("(line ", StringComparison.Ordinal);
                    bool whole = error.StartsWith("the file is empty", StringComparison.Ordinal);
                    Assert.True(syntax || whole || FieldPath().IsMatch(error), $"error without a field path: '{error}'");
                    Assert.False(error.StartsWith(':'), $"error with an empty field path: '{error}'");
                    Assert.False(error.Contains("NodeMesh.", StringComparison.Ordinal) || error.Contains("System.", StringComparison.Ordinal),
                        $"error naming an internal type: '{error}'");
                }

                return null;
            }
        });
        Assert.True(parse.Wait(Bound), $"the loader did not return within {Bound}");
        if (parse.Result is AgentConfig config)
        {
            AssertUsable(config);
        }
    }

    /// <summary>What the agent does with a configuration that validated must not fail either.</summary>
    private static void AssertUsable(AgentConfig config)
    {
        Assert.True(config.Ca.CertificateTtl > TimeSpan.Zero);
        Assert.True(config.Ca.NodeCertificateTtl > TimeSpan.Zero);
        foreach (WorkloadConfig w in config.Workloads)
        {
            _ = ConfigLoader.ParseMode(w.Mode);
        }

        var errors = new List<string>();
        PolicySet policies = PolicyCompiler.Compile(config.Policies, config.TrustDomain, errors);
        Assert.Empty(errors);
        Assert.Equal(config.Policies.Count, policies.Policies.Count);

        // What was accepted, written back out, is accepted again.
        string written = System.Text.Json.JsonSerializer.Serialize(config, ConfigJsonContext.Default.AgentConfig);
        Assert.True(Loads(written), $"accepted, written back, then refused: {written}");
    }
}
