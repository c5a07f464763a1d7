from simhelpers import any_api, api, connect_factory, sim, sim_factory  # noqa: F401 - fixtures
