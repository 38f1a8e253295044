# Embeds python/oat_edge/bundle_schema.json (the one bundle contract, also read by the Python
# package) into oat_edge_core as a string, so the C++ validator interprets the very same rules.
# Editing the JSON re-runs CMake (CMAKE_CONFIGURE_DEPENDS) and rebuilds the core.
function(oat_edge_embed_schema target)
  set(_src ${PROJECT_SOURCE_DIR}/python/oat_edge/bundle_schema.json)
  set(_out ${CMAKE_CURRENT_BINARY_DIR}/generated/bundle_schema_text.cpp)
  file(READ ${_src} OAT_EDGE_SCHEMA_TEXT)
  if(OAT_EDGE_SCHEMA_TEXT MATCHES "\\)oat_schema\"")
    message(FATAL_ERROR "${_src} contains the raw-string terminator )oat_schema\"")
  endif()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_src})
  configure_file(${PROJECT_SOURCE_DIR}/cmake/bundle_schema_text.cpp.in ${_out} @ONLY)
  target_sources(${target} PRIVATE ${_out})
endfunction()
