using NodeMesh.Shim;

return await CniPlugin.RunAsync(Environment.GetEnvironmentVariable("CNI_COMMAND"), Environment.GetEnvironmentVariable, Console.OpenStandardInput(),
    Console.Out, Console.Error);
