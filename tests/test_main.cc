// The one translation unit that defines the Boost.Test module: every tests/test_*.cc
// adds its suites to this binary (build/unit_tests).
#define BOOST_TEST_MODULE apikey
#include <boost/test/unit_test.hpp>
