/* Placeholder so ec_mesh has a source until the gRPC runtime lands. */
int rpc_placeholder(void);
int rpc_placeholder(void)
{
    return 0;
}
